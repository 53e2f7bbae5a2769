"""bench.fairness: the DLPM paper's comparisons in the simulator (see ``__main__``)."""
