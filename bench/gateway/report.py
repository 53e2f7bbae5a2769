"""Tables, the acceptance check, the plot, and the generated part of bench/RESULTS.md."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.peers.peer_env import ROOT

RESULTS = ROOT / "bench" / "RESULTS.md"
PLOT = ROOT / "bench" / "gateway" / "plots" / "latency-vs-rate.png"
SECTION = "## Gateway hot path"
BEGIN, END = "<!-- bench.gateway:begin -->", "<!-- bench.gateway:end -->"


def _direct(rows: list[dict[str, Any]], row: dict[str, Any]) -> dict[str, Any] | None:
    for other in rows:
        same = other["phase"] == row["phase"] and other["rate"] == row["rate"]
        if same and other["target"] == "direct":
            return other
    return None


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def added(rows: list[dict[str, Any]], row: dict[str, Any], key: str) -> float | None:
    direct = _direct(rows, row)
    if direct is None or row["target"] == "direct":
        return None
    return float(row[key] - direct[key])


def _cpu(row: dict[str, Any]) -> str:
    if row["target"] == "direct":
        return "-"
    saturated = row["errors"] > 0.01 * max(1, row["sent"])
    return _num(row["cpu_ms"]) + (" (saturated)" if saturated else "")


def rate_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| rate/s | target | sent | err | TTFB P50/P99 ms | total P50/P99 ms "
        "| added TTFB P50/P99 | added total P50/P99 | CPU ms/req | RSS MiB | load1 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in (r for r in rows if r["phase"] == "rates"):
        cells = [
            f"{row['rate']:.0f}",
            row["target"],
            str(row["sent"]),
            str(row["errors"]),
            f"{_num(row['ttfb_p50'])} / {_num(row['ttfb_p99'])}",
            f"{_num(row['total_p50'])} / {_num(row['total_p99'])}",
            f"{_num(added(rows, row, 'ttfb_p50'))} / {_num(added(rows, row, 'ttfb_p99'))}",
            f"{_num(added(rows, row, 'total_p50'))} / {_num(added(rows, row, 'total_p99'))}",
            _cpu(row),
            _num(row["rss_mb"], 0) if row["target"] != "direct" else "-",
            _num(row["load1"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def highest(rows: list[dict[str, Any]]) -> dict[str, tuple[float | None, float | None]]:
    """target -> (highest rate it sustained, the first rate it did not), over every window in
    rising order of rate."""
    from bench.gateway.run import Row, sustained

    out: dict[str, tuple[float | None, float | None]] = {}
    for row in sorted(rows, key=lambda r: r["rate"]):
        best, failed = out.get(row["target"], (None, None))
        if failed is not None:
            continue
        direct = _direct(rows, row)
        ref = Row(**direct) if direct and row["target"] != "direct" else None
        if sustained(Row(**row), ref):
            out[row["target"]] = (row["rate"], None)
        else:
            out[row["target"]] = (best, row["rate"])
    return out


def ladder_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| target | highest sustained rate/s | failed at | there: err, total P50/P99 ms, "
        "CPU ms/req | load1 |",
        "|---|---|---|---|---|",
    ]
    for target, (best, failed) in highest(rows).items():
        at = [r for r in rows if r["target"] == target]
        last = next((r for r in reversed(at) if r["rate"] == best), None)
        detail = "-"
        if last is not None:
            detail = (
                f"{last['errors']}/{last['sent']}, {_num(last['total_p50'])} / "
                f"{_num(last['total_p99'])}, {_num(last['cpu_ms'])}"
            )
        below = "below the first rate" if best is None else f"{best:.0f}"
        fail = f"{failed:.0f}" if failed is not None else "not reached"
        load = _num(last["load1"], 1) if last else "-"
        lines.append(f"| {target} | {below} | {fail} | {detail} | {load} |")
    return lines


def acceptance(rows: list[dict[str, Any]]) -> list[str]:
    rated = [r for r in rows if r["phase"] == "rates"]
    router = {r["rate"]: r for r in rated if r["target"] == "vllm-router"}
    lines = []
    for row in (r for r in rated if r["target"].startswith("fairgate")):
        ratio = "-"
        if row["rate"] in router and router[row["rate"]]["cpu_ms"] > 0:
            ratio = f"{row['cpu_ms'] / router[row['rate']]['cpu_ms']:.2f}x"
        p50, p99 = added(rated, row, "total_p50"), added(rated, row, "total_p99")
        lines.append(
            f"- {row['target']} at {row['rate']:.0f} req/s: CPU {_cpu(row)} ms/req ({ratio} "
            f"vllm-router's; target <= 2.5x), added total {_num(p50)} / {_num(p99)} ms "
            "(target <= 2 / 5 ms at 10 and 100 req/s)"
        )
    for target, (best, _) in highest(rows).items():
        if target.startswith("fairgate"):
            lines.append(
                f"- {target}: highest sustained rate {_num(best, 0)} req/s (target >= 400)"
            )
    return lines


def render(result: dict[str, Any]) -> str:
    rows = result["rows"]
    versions = ", ".join(f"{k} {v}" for k, v in result["versions"].items())
    settings = result["settings"]
    out = [
        f"Run {result['date']}, {result['wall_s']:.0f} s wall; {versions}.",
        f"Windows: {settings['window_s']:.0f} s per rate, {settings['ladder_window_s']:.0f} s per "
        f"ladder step; upstream token gap {settings['token_gap_ms']} ms; load average at the end "
        f"{result['load_end'][0]:.1f} / {result['load_end'][1]:.1f} (1 / 5 min).",
        "",
        *rate_table(rows),
        "",
        *ladder_table(rows),
        "",
        *acceptance(rows),
    ]
    for name, why in result.get("missing", {}).items():
        out.append(f"- NOT MEASURED {name}: {why.splitlines()[0]}")
    return "\n".join(out)


def plot(result: dict[str, Any], path: Path = PLOT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if r["errors"] <= 0.01 * max(1, r["sent"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for target in dict.fromkeys(r["target"] for r in rows):
        mine = sorted((r for r in rows if r["target"] == target), key=lambda r: r["rate"])
        rates = [r["rate"] for r in mine]
        axes[0].plot(rates, [r["total_p50"] for r in mine], marker="o", label=target)
        axes[1].plot(rates, [r["total_p99"] for r in mine], marker="o", label=target)
    for axis, title in zip(axes, ("total latency P50", "total latency P99"), strict=True):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("offered rate, requests/s (Poisson, streaming, 32 tokens)")
        axis.set_ylabel("ms")
        axis.set_title(title + " (windows with <= 1% errors)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write(result: dict[str, Any], results: Path = RESULTS, image: Path = PLOT) -> None:
    """Replace the generated part of the 'Gateway hot path' section (adding the section if
    it is missing); the text around the markers is written by hand and kept."""
    plot(result, image)
    generated = "\n".join(
        [
            BEGIN,
            "Generated by `python -m bench.gateway --write`:",
            "",
            render(result),
            "",
            f"![latency vs rate]({image.relative_to(results.parent).as_posix()})",
            END,
        ]
    )
    text = results.read_text()
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + generated + rest.split(END, 1)[1]
    elif SECTION in text:
        head, rest = text.split(SECTION, 1)
        text = head + SECTION + "\n\n" + generated + "\n" + rest
    else:
        text = text.rstrip() + f"\n\n{SECTION}\n\n{generated}\n"
    results.write_text(text)
