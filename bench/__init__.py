"""Benchmarks and the discrete-event simulator (``bench.sim``). Never imported by the product."""
