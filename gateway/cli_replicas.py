"""``fairgate replicas``: ask the running gateway for its replicas and their state."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from fairgate.gateway.config import Config

EXIT_UNREACHABLE = 1


def register(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    load: Callable[[argparse.Namespace], Config],
) -> None:
    parser = sub.add_parser(
        "replicas",
        help="list the running gateway's replicas and their state",
        description="Ask the running gateway (GET /admin/replicas, with the admin key from the "
        "configuration or <data_dir>/admin-key) for every model's replicas.",
    )
    parser.add_argument(
        "--config",
        metavar="PATH",
        help="the gateway's configuration file (default: $FAIRGATE_CONFIG, else built-in)",
    )
    parser.add_argument("--url", help="the gateway's base URL (default: from listen.*)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON answer")
    parser.set_defaults(func=lambda args: _replicas(args, load(args)))


def gateway_url(config: Config) -> str:
    host = config.listen.host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.listen.port}"


def _replicas(args: argparse.Namespace, config: Config) -> int:
    from fairgate.gateway.admin import admin_key

    url = (args.url or gateway_url(config)).rstrip("/")
    headers = {"Authorization": f"Bearer {admin_key(config)}"}
    try:
        response = httpx.get(url + "/admin/replicas", headers=headers, timeout=15.0)
    except httpx.HTTPError as error:
        print(f"fairgate: no gateway answering at {url}: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if response.status_code != 200:
        print(f"fairgate: {url} answered {response.status_code}: {response.text}", file=sys.stderr)
        return EXIT_UNREACHABLE
    data = response.json()
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(render_table(data))
    return 0


COLUMNS = ("MODEL", "REPLICA", "HEALTH", "ENGINE", "URL", "PID", "RESTARTS", "ACTIVE", "UP")


def render_table(data: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [COLUMNS]
    for model, entry in sorted(data.get("models", {}).items()):
        for replica in entry.get("replicas", []):
            engine = replica.get("engine") or {}
            since = engine.get("running_since")
            rows.append(
                (
                    model,
                    str(replica.get("replica", "")),
                    str(replica.get("health") or "-"),
                    str(engine.get("state") or "-"),
                    str(replica.get("url") or "-"),
                    str(engine.get("pid") or "-"),
                    str(engine.get("restarts", "-")),
                    str(replica.get("active_requests", "-")),
                    f"{now - since:.0f}s" if since else "-",
                )
            )
    failed = data.get("failed_models") or {}
    for name in data.get("pending_models", []):
        rows.append((name, "-", "failed" if name in failed else "preparing", *["-"] * 6))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines += problems(data, failed, now)
    lines.append(f"ready: {'yes' if data.get('ready') else 'no'}")
    return "\n".join(line.rstrip() for line in lines)


def problems(data: dict[str, Any], failed: dict[str, str], now: float) -> list[str]:
    """One line per replica whose engine reported an error, and per model that failed."""
    lines = [f"{name}: {reason}" for name, reason in sorted(failed.items())]
    for entry in data.get("models", {}).values():
        for replica in entry.get("replicas", []):
            engine = replica.get("engine") or {}
            if not engine.get("error") or engine.get("state") == "running":
                continue
            line = f"{replica.get('replica')}: {engine['error']}"
            if engine.get("next_retry_at"):
                line += f"; next try in {max(engine['next_retry_at'] - now, 0):.0f}s"
            if engine.get("log_path"):
                line += f" (log: {engine['log_path']})"
            lines.append(line)
    return lines
