"""Soak: many tenants against a real ``fairgate serve`` in front of capacity-limited ``sim``
engines, for minutes. See ``bench.soak.run``; ``python -m bench.soak`` for the long one."""
