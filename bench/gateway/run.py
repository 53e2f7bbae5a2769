"""One run: every target, interleaved, at each rate, then the highest rate each sustains.

    python -m bench.gateway [--write] [--smoke] [--only fairgate --only direct ...]

The load generator (this process) and the upstream share core 0; every proxy is pinned to core
1. All targets are started first and stay up; each measurement window then goes to one of them
in turn, in a rotating order, so that a change in the machine's load (other work shares it)
falls on every target alike. The load average is recorded with each row.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop

from bench.gateway import report
from bench.gateway.load import LoadResult, run_load
from bench.gateway.targets import FAIRGATE_BACKGROUND, Target, make_targets
from bench.gateway.upstream import LAST_WORD, MODEL
from bench.peers.peer_env import DEFAULT_VENV, ROOT, ensure_peer_env
from bench.peers.processes import Process, free_port

PEERS = ("litellm", "vllm-router")
TARGETS = ["direct", "fairgate", FAIRGATE_BACKGROUND, *PEERS]
LOAD_CORE, PROXY_CORE = 0, 1
LADDER = [400, 600, 800, 1000, 1300, 1600, 2000, 2600, 3200]


@dataclass(slots=True)
class Settings:
    rates: list[float]
    window_s: float
    ladder: list[float]
    ladder_window_s: float
    targets: list[str]
    token_gap_ms: float = 0.0
    rounds: int = 1
    trees: dict[str, str] = field(default_factory=dict)  # extra fairgate rows: name -> tree


@dataclass(slots=True)
class Row:
    target: str
    rate: float
    phase: str  # "rates" or "ladder"
    sent: int
    errors: int
    ttfb_p50: float
    ttfb_p99: float
    total_p50: float
    total_p99: float
    cpu_ms: float  # proxy CPU per request sent
    rss_mb: float
    load1: float
    late_p99_ms: float  # how late the load generator sent (its own health)
    overhead_p50: float | None = None
    errors_seen: dict[str, int] = field(default_factory=dict)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(target: Target, rate: float, window_s: float, phase: str, seed: int) -> Row:
    cpu0 = target.cpu_seconds()
    load1 = os.getloadavg()[0]
    result: LoadResult = uvloop.run(
        run_load(
            target.url, target.key, MODEL, LAST_WORD, rate=rate, duration_s=window_s, seed=seed
        )
    )
    cpu = target.cpu_seconds() - cpu0
    ok = [s for s in result.samples if s.ok]
    errors: dict[str, int] = {}
    for sample in result.samples:
        if not sample.ok:
            errors[sample.error] = errors.get(sample.error, 0) + 1
    overheads = [s.overhead_ms for s in ok if s.overhead_ms is not None]
    sent = len(result.samples)
    return Row(
        target=target.name,
        rate=rate,
        phase=phase,
        sent=sent,
        errors=sent - len(ok),
        ttfb_p50=_pct([s.ttfb * 1e3 for s in ok], 0.5),
        ttfb_p99=_pct([s.ttfb * 1e3 for s in ok], 0.99),
        total_p50=_pct([s.total * 1e3 for s in ok], 0.5),
        total_p99=_pct([s.total * 1e3 for s in ok], 0.99),
        cpu_ms=cpu * 1e3 / sent if sent and target.pid else 0.0,
        rss_mb=target.rss_bytes() / 2**20,
        load1=load1,
        late_p99_ms=_pct(result.late_s, 0.99) * 1e3,
        overhead_p50=_pct(overheads, 0.5) if overheads else None,
        errors_seen=errors,
    )


def settle(target: Target, timeout_s: float = 30.0) -> None:
    """Wait until the proxy is idle again (under 5% of a core over 0.5 s): a saturated one
    keeps working through its backlog after the window, on the core the next row needs."""
    if target.pid is None:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        before = target.cpu_seconds()
        time.sleep(0.5)
        if target.cpu_seconds() - before < 0.025:
            return


def sustained(row: Row, direct: Row | None) -> bool:
    """No more than 1% errors and no queue building up: an overloaded proxy's backlog grows
    through the window, so its median total climbs past 100 ms (direct's is about 1 ms). A
    P99 bound would instead fail on the shared machine's scheduling noise."""
    reference = direct.total_p50 if direct is not None else 0.0
    return row.errors <= 0.01 * row.sent and row.total_p50 <= reference + 100.0


def _log(row: Row) -> None:
    print(
        f"{row.phase:6} {row.target:20} {row.rate:6.0f}/s  sent {row.sent:5}  err {row.errors:4}"
        f"  ttfb {row.ttfb_p50:6.2f}/{row.ttfb_p99:6.2f}  total {row.total_p50:7.2f}/"
        f"{row.total_p99:7.2f} ms  cpu {row.cpu_ms:5.2f} ms/req  rss {row.rss_mb:5.0f} MiB"
        f"  load {row.load1:4.1f}  late99 {row.late_p99_ms:5.1f} ms",
        flush=True,
    )


def _rotated(targets: list[Target], turn: int) -> list[Target]:
    turn %= len(targets)
    return targets[turn:] + targets[:turn]


def run_rates(targets: list[Target], settings: Settings) -> list[Row]:
    rows: list[Row] = []
    saturated: set[str] = set()
    turn = 0
    for rnd in range(settings.rounds):
        for rate in settings.rates:
            for target in _rotated(targets, turn):
                if target.name in saturated:
                    continue
                row = measure(target, rate, settings.window_s, "rates", seed=rnd * 1000 + int(rate))
                settle(target)
                rows.append(row)
                _log(row)
                if row.errors > 0.5 * row.sent:
                    saturated.add(target.name)  # later, higher rates would only time out
            turn += 1
    return rows


def still_climbing(targets: list[Target], rows: list[Row]) -> list[Target]:
    """Targets that sustained the highest rate measured so far (direct always climbs)."""
    top = max((r.rate for r in rows), default=0.0)
    at_top = {r.target: r for r in rows if r.rate == top}
    direct = at_top.get("direct")
    return [
        t
        for t in targets
        if t.name == "direct" or (t.name in at_top and sustained(at_top[t.name], direct))
    ]


def run_ladder(targets: list[Target], settings: Settings, before: list[Row]) -> list[Row]:
    rows: list[Row] = []
    climbing = still_climbing(targets, before)
    for step, rate in enumerate(settings.ladder):
        direct: Row | None = None
        failed: list[Target] = []
        for target in _rotated(climbing, step):
            row = measure(target, rate, settings.ladder_window_s, "ladder", seed=7 + step)
            settle(target)
            rows.append(row)
            _log(row)
            if target.name == "direct":
                direct = row
        for target in climbing:
            row = next(r for r in rows if r.target == target.name and r.rate == rate)
            if not sustained(row, direct if target.name != "direct" else None):
                failed.append(target)
        climbing = [t for t in climbing if t not in failed]
        if not climbing:
            break
    return rows


def _start_upstream(workdir: Path, token_gap_ms: float) -> tuple[Process, str]:
    port = free_port()
    argv = ["taskset", "-c", str(LOAD_CORE), sys.executable, "-m", "bench.gateway.upstream"]
    argv += ["--port", str(port), "--token-gap-ms", str(token_gap_ms)]
    process = Process("upstream", argv, workdir / "upstream.log", cwd=ROOT).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_ready(url + "/health", 30.0)
    return process, url


def _warm(targets: list[Target]) -> None:
    for target in targets:
        uvloop.run(run_load(target.url, target.key, MODEL, LAST_WORD, rate=20, duration_s=1.0))


def _versions(targets: list[Target], peers_versions: dict[str, str]) -> dict[str, str]:
    versions = {t.name: t.version for t in targets if t.name != "direct"}
    versions["python"] = platform.python_version()
    versions["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, {platform.release()}"
    versions.update({f"peers venv {k}": v for k, v in peers_versions.items()})
    return versions


def run(
    settings: Settings, workdir: Path, peers_venv: Path, *, install: bool = False
) -> dict[str, Any]:
    # The load generator gets its own core; the caller's cores come back afterwards, since
    # everything this process starts later (a test session's Ray, say) inherits them.
    cores = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {LOAD_CORE})
    try:
        return _run_pinned(settings, workdir, peers_venv, install)
    finally:
        os.sched_setaffinity(0, cores)


def _run_pinned(
    settings: Settings, workdir: Path, peers_venv: Path, install: bool
) -> dict[str, Any]:
    wants_peers = any(name in PEERS for name in settings.targets)
    peers = ensure_peer_env(peers_venv, install=install and wants_peers)
    upstream, url = _start_upstream(workdir, settings.token_gap_ms)
    targets: list[Target] = []
    started = time.time()
    try:
        trees = {name: Path(tree) for name, tree in settings.trees.items()}
        names = [*settings.targets, *trees]
        targets, missing = make_targets(names, url, workdir, PROXY_CORE, peers, trees)
        for name, why in missing.items():
            print(f"NOT MEASURED {name}: {why}", flush=True)
        _warm(targets)
        rows = run_rates(targets, settings)
        rows += run_ladder(targets, settings, rows)
    finally:
        for target in targets:
            target.stop()
        upstream.stop()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_s": round(time.time() - started, 1),
        "settings": asdict(settings),
        "versions": _versions(targets, peers.versions),
        "missing": missing,
        "rows": [asdict(r) for r in rows],
        "load_end": os.getloadavg(),
    }


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--only", action="append", help=f"targets among {TARGETS}")
    parser.add_argument("--smoke", action="store_true", help="direct and fairgate, a few seconds")
    parser.add_argument("--write", action="store_true", help="update bench/RESULTS.md and the PNG")
    parser.add_argument("--json", type=Path, help="also write the raw rows here")
    parser.add_argument("--workdir", type=Path, default=ROOT / ".cache" / "bench-gateway")
    parser.add_argument("--peers-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never pip-install LiteLLM and vllm-router into the peers venv (first run: a minute)",
    )
    parser.add_argument("--token-gap-ms", type=float, default=0.0)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rates", help="comma-separated rates instead of 10,100,300")
    parser.add_argument("--window-s", type=float, default=6.0)
    parser.add_argument("--no-ladder", action="store_true", help="skip the highest-rate search")
    parser.add_argument(
        "--tree",
        action="append",
        metavar="NAME=DIR",
        help="also run the fairgate of another checkout (git archive REV | tar -x -C DIR)",
    )
    return parser.parse_args(argv)


def _settings(args: argparse.Namespace) -> Settings:
    if args.smoke:
        return Settings([10, 50], 1.0, [200], 1.0, args.only or ["direct", "fairgate"])
    targets = args.only or TARGETS
    if "direct" not in targets:
        targets = ["direct", *targets]
    rates = [float(r) for r in args.rates.split(",")] if args.rates else [10.0, 100.0, 300.0]
    ladder: list[float] = [] if args.no_ladder else [float(r) for r in LADDER]
    trees = dict(item.split("=", 1) for item in args.tree or [])
    rounds = max(1, args.rounds)
    return Settings(rates, args.window_s, ladder, 3.0, targets, args.token_gap_ms, rounds, trees)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(_settings(args), args.workdir, args.peers_venv, install=not args.no_install)
    print(report.render(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    if args.write:
        report.write(result)
    return 0
