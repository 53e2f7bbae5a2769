"""The long soak: ``python -m bench.soak [--tenants 50] [--duration 300] [--workdir DIR]
[--upstream URL ...]``. With ``--upstream`` the gateway serves from those OpenAI-compatible
servers (provider ``openai``, e.g. ``python -m tests.support.fake_upstream --delay 0.004``)
instead of sim engines.

Prints the figures ``bench/RESULTS.md`` quotes in its "Soak" section."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.soak.gateway import Shape
from bench.soak.run import report, run_soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--clients-per-tenant", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--upstream", action="append", default=[])
    args = parser.parse_args()
    shape = Shape(
        tenants=args.tenants,
        clients_per_tenant=args.clients_per_tenant,
        upstreams=tuple(args.upstream),
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fairgate-soak-"))
    result = run_soak(workdir, shape, args.duration, sample_s=2.0)
    for line in report(result):
        print(line)


if __name__ == "__main__":
    main()
