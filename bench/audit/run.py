"""Detection rate against opened samples, and false positives, for the semantic audit.

    python -m bench.audit [--problems N] [--calibrate] [--out bench/RESULTS.md]

Honest traces: CHAMP (``champ-dataset``) 0-Shot solutions by four models, split by problem into a
calibration half (thresholds, length model) and a test half (everything reported). Attacks from
:mod:`bench.audit.attacks` on the test half, donors from the test half. ``--calibrate`` writes
the thresholds and the length model to ``metering/calibration.py`` (shipped with the release).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from bench.audit.attacks import ATTACKS, INFLATIONS, Provider
from bench.audit.embed_cache import EmbeddingCache
from bench.audit.simulate import calibrate, sequential, unlimited
from bench.audit.traces import Trace, load_traces, split, tokenizer
from fairgate.metering import estimator, semantic
from fairgate.metering.auditor import detection_bound

REPO = Path(__file__).resolve().parents[2]
BLOCK_SIZE = 16
SAMPLES = (8, 16, 32, 48, 64)
ALPHA = 0.0015  # per statistic; six flags (five semantic, one length) stay under 1%
BASE = semantic.Thresholds(
    block_floor=0.16,
    dup_cosine=0.995,
    near_cosine=0.90,
    adjacent_floor=0.0,
    max_off_topic={},
    max_duplicates={},
    max_near_share={},
    max_incoherent={},
)


@dataclass
class Case:
    trace: Trace
    blocks: list[str]
    billed_extra: int = 0


def pick(traces: list[Trace], problems: int, seed: int) -> list[Trace]:
    by_problem: dict[str, list[Trace]] = defaultdict(list)
    for t in traces:
        by_problem[t.problem].append(t)
    full = sorted(p for p, ts in by_problem.items() if len(ts) >= 3)
    chosen = random.Random(seed).sample(full, min(problems, len(full)))
    return [t for p in sorted(chosen) for t in by_problem[p]]


def random_pool(size: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    tok = tokenizer()
    vocab = tok.get_vocab_size()
    return [
        " " + tok.decode([rng.randrange(1000, vocab) for _ in range(BLOCK_SIZE)])
        for _ in range(size)
    ]


class PooledProvider(Provider):
    """Random padding drawn without replacement from a pre-embedded pool (embedding cost)."""

    def __init__(self, traces: list[Trace], pool: list[str], seed: int) -> None:
        super().__init__(traces, BLOCK_SIZE, seed)
        self.pool = pool

    def padding(self, attack: str, trace: Trace, blocks: list[str], n: int) -> list[str]:
        if attack == "random":
            return self.rng.sample(self.pool, n)
        return super().padding(attack, trace, blocks, n)


def seed_of(*parts: object) -> bytes:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).digest()


def audit_case(
    case: Case, cache: EmbeddingCache, th: semantic.Thresholds, k: int, tag: str
) -> tuple[bool, int, list[semantic.Statistics]]:
    t = case.trace
    vectors = cache.vectors(case.blocks)
    context = cache.vectors([t.prompt, t.answer])
    out = sequential(
        f"{t.problem}/{t.model}", vectors, context, BLOCK_SIZE, k, th, seed_of(tag, t.model, k)
    )
    return out.flagged, out.opened, list(out.looks)


def hidden_tokens(case: Case) -> int:
    return len(case.blocks) * BLOCK_SIZE + case.billed_extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit")
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="append the tables to this file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    clock = time.perf_counter()

    traces = pick(load_traces(settings=("0-Shot",)), args.problems, args.seed)
    cal, test = split(traces)
    pool = random_pool(4000, args.seed)
    cache = EmbeddingCache()
    provider = PooledProvider(test, pool, args.seed)
    cases: dict[tuple[str, float], list[Case]] = {}
    for attack in ATTACKS:
        for f in INFLATIONS:
            cases[(attack, f)] = []
            for t in test:
                inflated = provider.inflate(attack, t, f)
                cases[(attack, f)].append(Case(t, inflated.blocks, inflated.billed_extra))
    texts = [x for t in traces for x in (t.prompt, t.answer, *t.block_texts(BLOCK_SIZE))]
    texts += [b for cs in cases.values() for c in cs for b in c.blocks]
    cache.ensure(texts)
    print(
        f"{len(cal)} calibration and {len(test)} test traces; embedded {cache.embedded} new "
        f"blocks in {cache.seconds:.1f} s CPU",
        flush=True,
    )

    # Calibration: honest looks at every sample size, with no limit in force.
    looks: list[semantic.Statistics] = []
    for t in cal:
        case = Case(t, t.block_texts(BLOCK_SIZE))
        for k in SAMPLES:
            looks += audit_case(case, cache, unlimited(BASE), k, "cal")[2]
    thresholds = calibrate(BASE, looks, ALPHA)
    length = estimator.fit(
        [(t.prompt, t.answer, len(t.block_texts(BLOCK_SIZE)) * BLOCK_SIZE) for t in cal], ALPHA
    )
    if args.calibrate:
        write_calibration(thresholds, length, len(cal))

    rows = evaluate(cases, test, cache, thresholds, length)
    report = render(rows, len(cal), len(test), thresholds, time.perf_counter() - clock)
    print(report)
    if args.out:
        replace_section(args.out, report)
    return 0


def evaluate(
    cases: dict[tuple[str, float], list[Case]],
    test: list[Trace],
    cache: EmbeddingCache,
    th: semantic.Thresholds,
    length: estimator.LengthModel,
) -> dict[str, object]:
    honest = [Case(t, t.block_texts(BLOCK_SIZE)) for t in test]
    fp: dict[int, float] = {}
    fp_semantic: dict[int, float] = {}
    opened_honest: dict[int, float] = {}
    length_fp = sum(
        length.check(hidden_tokens(c), c.trace.prompt, c.trace.answer) is not None for c in honest
    ) / len(honest)
    for k in SAMPLES:
        outs = [audit_case(c, cache, th, k, "test") for c in honest]
        fp_semantic[k] = sum(o[0] for o in outs) / len(outs)
        flags = [
            o[0] or length.check(hidden_tokens(c), c.trace.prompt, c.trace.answer) is not None
            for o, c in zip(outs, honest, strict=True)
        ]
        fp[k] = sum(flags) / len(flags)
        opened_honest[k] = statistics.mean(o[1] for o in outs)
    detect: dict[tuple[str, float, int], float] = {}
    detect_semantic: dict[tuple[str, float, int], float] = {}
    opened: dict[tuple[str, float, int], float] = {}
    length_only: dict[tuple[str, float], float] = {}
    for (attack, f), cs in cases.items():
        by_length = [
            length.check(hidden_tokens(c), c.trace.prompt, c.trace.answer) is not None for c in cs
        ]
        length_only[(attack, f)] = sum(by_length) / len(cs)
        for k in SAMPLES:
            if attack == "overbill":
                # The count check: billed reasoning tokens differ from the committed leaves.
                flags = [c.billed_extra > 0 for c in cs]
                detect[(attack, f, k)] = detect_semantic[(attack, f, k)] = sum(flags) / len(cs)
                opened[(attack, f, k)] = 0
                continue
            outs = [audit_case(c, cache, th, k, f"{attack}{f}") for c in cs]
            detect_semantic[(attack, f, k)] = sum(o[0] for o in outs) / len(cs)
            detect[(attack, f, k)] = sum(
                o[0] or b for o, b in zip(outs, by_length, strict=True)
            ) / len(cs)
            opened[(attack, f, k)] = statistics.mean(o[1] for o in outs)
    return {
        "fp": fp,
        "fp_semantic": fp_semantic,
        "length_fp": length_fp,
        "opened_honest": opened_honest,
        "detect": detect,
        "detect_semantic": detect_semantic,
        "opened": opened,
        "length_only": length_only,
        "blocks": statistics.mean(len(c.blocks) for c in honest),
    }


def render(
    rows: dict[str, object], n_cal: int, n_test: int, th: semantic.Thresholds, seconds: float
) -> str:
    fp = rows["fp"]
    detect = rows["detect"]
    opened = rows["opened"]
    assert isinstance(fp, dict) and isinstance(detect, dict) and isinstance(opened, dict)
    lines = [
        "## Audit",
        "",
        f"`python -m bench.audit` ({seconds:.0f} s). Honest traces: CHAMP 0-Shot solutions "
        f"(champ-dataset 1.0.0; GPT-3.5, GPT-4, GPT-4 Turbo, PaLM 2 Medium), {n_cal} for "
        f"calibration, {n_test} for test (disjoint problems); mean "
        f"{rows['blocks']:.1f} blocks of {BLOCK_SIZE} tokens per honest trace. Detection = share "
        "of inflated test requests flagged (semantic checks or the length flag); sequential "
        "rounds of 8 positions, early stop on a finding or when every block is open.",
        "",
        "| attack | inflation | "
        + " | ".join(f"k={k}" for k in SAMPLES)
        + " | blocks opened at k=64 "
        "| length flag alone | bound 1-(1-f/(1+f))^64 |",
        "|---|---|" + "---|" * len(SAMPLES) + "---|---|---|",
    ]
    length_only = rows["length_only"]
    assert isinstance(length_only, dict)
    for attack in ATTACKS:
        for f in INFLATIONS:
            cells = " | ".join(f"{detect[(attack, f, k)]:.1%}" for k in SAMPLES)
            lines.append(
                f"| {attack} | {f:.0%} | {cells} | {opened[(attack, f, 64)]:.1f} | "
                f"{length_only[(attack, f)]:.1%} | {detection_bound(64, f):.3f} |"
            )
    fp_semantic = rows["fp_semantic"]
    opened_honest = rows["opened_honest"]
    assert isinstance(fp_semantic, dict) and isinstance(opened_honest, dict)
    lines += [
        "",
        "| honest test requests | " + " | ".join(f"k={k}" for k in SAMPLES) + " |",
        "|---|" + "---|" * len(SAMPLES),
        "| false positives, all flags | " + " | ".join(f"{fp[k]:.2%}" for k in SAMPLES) + " |",
        "| false positives, semantic only | "
        + " | ".join(f"{fp_semantic[k]:.2%}" for k in SAMPLES)
        + " |",
        "| blocks opened | " + " | ".join(f"{opened_honest[k]:.1f}" for k in SAMPLES) + " |",
        "",
        f"Length flag alone on honest test requests: {rows['length_fp']:.2%} false positives. "
        f"Thresholds: block floor {th.block_floor}, duplicate cosine {th.dup_cosine}, "
        f"near-duplicate cosine {th.near_cosine}, adjacent floor {th.adjacent_floor}; per-count "
        f"limits at the {1 - ALPHA:.1%} honest quantile (metering/calibration.py).",
    ]
    return "\n".join(lines) + "\n"


def write_calibration(th: semantic.Thresholds, length: estimator.LengthModel, n: int) -> None:
    path = REPO / "metering" / "calibration.py"
    body = json.dumps({"thresholds": th.to_dict(), "length": length.to_dict()}, indent=4)
    body = body.replace("Infinity", "1e9")
    path.write_text(
        '"""Thresholds and length model from honest traces (generated: do not edit).\n\n'
        f"Made by ``python -m bench.audit --calibrate`` from {n} honest CHAMP 0-Shot traces\n"
        f"(champ-dataset 1.0.0), blocks of {BLOCK_SIZE} tokens, per-statistic alpha {ALPHA}.\n"
        '"""\n\n'
        "from __future__ import annotations\n\n"
        "from typing import Any\n\n"
        "from fairgate.metering.estimator import LengthModel\n"
        "from fairgate.metering.semantic import Thresholds\n\n"
        f"CALIBRATION: dict[str, Any] = {body}\n\n"
        'THRESHOLDS = Thresholds.from_dict(CALIBRATION["thresholds"])\n'
        'LENGTH = LengthModel.from_dict(CALIBRATION["length"])\n'
    )
    ruff = Path(sys.executable).with_name("ruff")
    if ruff.exists():  # the generated file is formatted like the rest of the package
        subprocess.run([str(ruff), "format", "-q", str(path)], check=False)


def replace_section(path: Path, section: str) -> None:
    text = path.read_text() if path.exists() else ""
    start = text.find("## Audit\n")
    if start < 0:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + 1)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    path.write_text(text)


if __name__ == "__main__":
    raise SystemExit(main())
