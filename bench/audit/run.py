"""Detection rate against opened samples, and false positives, for the semantic audit.

    python -m bench.audit [--problems N] [--calibrate] [--train] [--out bench/RESULTS.md]
    python -m bench.audit --quick [--train]   # the default schedule only: a loop for iteration

Honest traces: CHAMP (``champ-dataset``) 0-Shot solutions by four models, split by problem into a
calibration half (cut-offs, length model, block classifier) and a test half (everything
reported). Attacks from :mod:`bench.audit.attacks` on each half with donors from that half.
``--calibrate`` writes the cut-offs and the length model to ``metering/calibration.py``;
``--train`` refits the block classifier (:mod:`bench.audit.train`) into
``metering/block_classifier.json``; both ship with the release. Without them the run evaluates
the shipped classifier and cut-offs recomputed from the calibration half (the same numbers).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.audit.attacks import ATTACKS, INFLATIONS, Provider
from bench.audit.embed_cache import EmbeddingCache
from bench.audit.simulate import Outcome, calibrate, cutoffs, learned, sequential, unlimited
from bench.audit.traces import Trace, load_traces, split, tokenizer
from bench.audit.train import Attacked, Honest, attacked_cases, context, train, write
from fairgate.metering import block_classifier, estimator, semantic
from fairgate.metering.auditor import detection_bound
from fairgate.metering.block_classifier import BlockClassifier

REPO = Path(__file__).resolve().parents[2]
BLOCK_SIZE = 16
SAMPLES = (8, 16, 32, 48, 64)
Schedule = tuple[int, int | None]  # positions, and the opened-block budget past them
SCHEDULES: tuple[Schedule, ...] = (*((k, None) for k in SAMPLES), (64, 64))
CUTOFF_SCHEDULES: tuple[Schedule, ...] = ((64, None), (64, 64))
JUDGES = ("learned", "cutoffs")
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


@dataclass
class Prepared:
    cal: list[Trace]
    test: list[Trace]
    cache: EmbeddingCache
    cases: dict[tuple[str, float], list[Case]]  # attacked test traces
    cal_honest: Honest
    cal_attacked: Attacked
    block_size: int = BLOCK_SIZE
    schedules: list[Schedule] = field(default_factory=lambda: list(SCHEDULES))


def prepare(problems: int = 150, seed: int = 7) -> Prepared:
    """Traces, both halves' attacks (each half its own donors and random pool), embeddings."""
    traces = pick(load_traces(settings=("0-Shot",)), problems, seed)
    cal, test = split(traces)
    cache = EmbeddingCache()
    texts = [x for t in traces for x in (t.prompt, t.answer, *t.block_texts(BLOCK_SIZE))]
    cache.ensure(texts)
    provider = PooledProvider(test, random_pool(4000, seed), seed)
    cases: dict[tuple[str, float], list[Case]] = {}
    for attack in ATTACKS:
        for f in INFLATIONS:
            cases[(attack, f)] = []
            for t in test:
                inflated = provider.inflate(attack, t, f)
                cases[(attack, f)].append(Case(t, inflated.blocks, inflated.billed_extra))
    cache.ensure(b for cs in cases.values() for c in cs for b in c.blocks)
    cal_provider = PooledProvider(cal, random_pool(4000, seed + 4), seed + 4)
    cache.ensure(cal_provider.pool)
    honest = [(t, cache.vectors(t.block_texts(BLOCK_SIZE)), context(t, cache)) for t in cal]
    attacked = attacked_cases(cal, cal_provider, cache, BLOCK_SIZE)
    print(
        f"{len(cal)} calibration and {len(test)} test traces; embedded {cache.embedded} new "
        f"blocks in {cache.seconds:.1f} s CPU",
        flush=True,
    )
    return Prepared(cal, test, cache, cases, honest, attacked)


def run_case(
    case: Case,
    cache: EmbeddingCache,
    judge: str,
    plan: Schedule,
    tag: str,
    th: semantic.Thresholds,
    model: BlockClassifier,
) -> Outcome:
    t = case.trace
    vectors = cache.vectors(case.blocks)
    ctx = cache.vectors([t.prompt, t.answer])
    look = cutoffs(ctx, BLOCK_SIZE, th) if judge == "cutoffs" else learned(ctx, len(vectors), model)
    samples, max_blocks = plan
    return sequential(
        f"{t.problem}/{t.model}", vectors, BLOCK_SIZE, samples, look,
        seed_of(tag, t.model, samples, *([max_blocks] if max_blocks else [])), max_blocks,
    )  # fmt: skip


def hidden_tokens(case: Case) -> int:
    return len(case.blocks) * BLOCK_SIZE + case.billed_extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit")
    parser.add_argument("--problems", type=int, default=150)
    parser.add_argument(
        "--calibrate", action="store_true",
        help="write the cut-offs and length model fit on the calibration half to "
        "metering/calibration.py",
    )  # fmt: skip
    parser.add_argument(
        "--train", action="store_true",
        help="refit the block classifier on the calibration half and write "
        "metering/block_classifier.json (else the shipped one is evaluated)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="append the tables to this file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--quick", action="store_true",
        help="only the audit's default schedule (64 positions, up to 64 blocks): train, "
        "calibrate and test on it alone and print a short table (not for --out)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    clock = time.perf_counter()
    prep = prepare(args.problems, args.seed)
    cache = prep.cache
    if args.quick:
        prep.schedules = [(64, 64)]

    # Calibration of the cut-offs: honest looks under every schedule, with no limit in force.
    looks: list[semantic.Statistics] = []
    for t in prep.cal:
        case = Case(t, t.block_texts(BLOCK_SIZE))
        for plan in prep.schedules:
            looks += run_case(case, cache, "cutoffs", plan, "cal", unlimited(BASE), None).looks
    thresholds = calibrate(BASE, looks, ALPHA)
    length = estimator.fit(
        [(t.prompt, t.answer, len(t.block_texts(BLOCK_SIZE)) * BLOCK_SIZE) for t in prep.cal],
        ALPHA,
    )
    if args.calibrate:
        write_calibration(thresholds, length, len(prep.cal))
    if args.train:
        model = train(prep.cal_honest, prep.cal_attacked, BLOCK_SIZE, prep.schedules)
        print(f"wrote {write(model)}", flush=True)
    else:
        model = block_classifier.load()

    rows = evaluate(prep, thresholds, length, model)
    if args.quick:
        print(render_quick(rows, model, time.perf_counter() - clock))
        return 0
    report = render(rows, len(prep.cal), len(prep.test), thresholds, model,
                    time.perf_counter() - clock)  # fmt: skip
    print(report)
    if args.out:
        replace_section(args.out, report)
    return 0


def evaluate(
    prep: Prepared, th: semantic.Thresholds, length: estimator.LengthModel, model: BlockClassifier
) -> dict[str, Any]:
    """Per judge and schedule: false positives on honest test traces, detection per attack."""
    honest = [Case(t, t.block_texts(BLOCK_SIZE)) for t in prep.test]

    def by_length(c: Case) -> bool:
        return length.check(hidden_tokens(c), c.trace.prompt, c.trace.answer) is not None

    out: dict[str, Any] = {"flag": {}, "opened": {}, "length_only": {}}
    out["length_fp"] = sum(map(by_length, honest)) / len(honest)
    out["blocks"] = statistics.mean(len(c.blocks) for c in honest)
    groups: list[tuple[str, float, list[Case]]] = [("honest", 0.0, honest)]
    groups += [(a, f, cs) for (a, f), cs in prep.cases.items()]
    both_plans = [p for p in CUTOFF_SCHEDULES if p in prep.schedules]
    for attack, f, cs in groups:
        lengths = [by_length(c) for c in cs]
        per: dict[tuple[str, Schedule], list[bool]] = {}
        out["length_only"][(attack, f)] = sum(lengths) / len(cs)
        for judge in JUDGES:
            for plan in prep.schedules if judge == "learned" else both_plans:
                if attack == "overbill":  # the count check: billed tokens differ from leaves
                    flags, opened = [c.billed_extra > 0 for c in cs], [0] * len(cs)
                else:
                    outs = [run_case(c, prep.cache, judge, plan, f"{attack}{f}", th, model)
                            for c in cs]  # fmt: skip
                    flags, opened = [o.flagged for o in outs], [o.opened for o in outs]
                per[(judge, plan)] = flags
                tally(out, (attack, f, judge, plan), flags, lengths)
                out["opened"][(attack, f, judge, plan)] = statistics.mean(opened)
        for plan in both_plans:
            # Same seeds, same opened blocks each round: both judges together flag a request
            # exactly when either does alone.
            both = [a or b for a, b in zip(per[("learned", plan)], per[("cutoffs", plan)],
                                           strict=True)]  # fmt: skip
            tally(out, (attack, f, "both", plan), both, lengths)
    return out


def tally(
    out: dict[str, Any], key: tuple[Any, ...], flags: list[bool], lengths: list[bool]
) -> None:
    out["flag"][(*key, "semantic")] = sum(flags) / len(flags)
    out["flag"][(*key, "all")] = sum(a or b for a, b in zip(flags, lengths, strict=True)) / len(
        flags
    )


def label(plan: Schedule) -> str:
    samples, max_blocks = plan
    return f"k={samples}" if max_blocks is None else f"<={max_blocks} blocks"


def render_quick(rows: dict[str, Any], model: BlockClassifier, seconds: float) -> str:
    """The default schedule only: learned, cut-offs and both, per attack and inflation."""
    flag, wide = rows["flag"], (64, 64)
    lines = [
        f"quick run ({seconds:.0f} s): <=64 blocks; threshold {model.threshold:.2f}, lift "
        f"{model.lift_threshold:.2f}, run gap {model.gap_threshold:.2f}, copies limit "
        f"{model.copies_limit}",
        "attack        infl  learned  cutoffs     both  opened",
    ]
    groups = [("honest", 0.0)] + [(a, f) for a in ATTACKS for f in INFLATIONS]
    for attack, f in groups:
        cells = [flag[(attack, f, j, wide, "all")] for j in ("learned", "cutoffs", "both")]
        lines.append(
            f"{attack:<13} {f:>4.0%} " + " ".join(f"{c:>8.1%}" for c in cells)
            + f" {rows['opened'][(attack, f, 'learned', wide)]:>7.1f}"
        )  # fmt: skip
    return "\n".join(lines)


def render(
    rows: dict[str, Any], n_cal: int, n_test: int, th: semantic.Thresholds,
    model: BlockClassifier, seconds: float,
) -> str:  # fmt: skip
    flag, opened = rows["flag"], rows["opened"]
    learned_cols = list(SCHEDULES)
    lines = [
        "## Audit",
        "",
        f"`python -m bench.audit` ({seconds:.0f} s). Honest traces: CHAMP 0-Shot solutions "
        f"(champ-dataset 1.0.0; GPT-3.5, GPT-4, GPT-4 Turbo, PaLM 2 Medium), {n_cal} for "
        f"calibration, {n_test} for test (disjoint problems); mean "
        f"{rows['blocks']:.1f} blocks of {BLOCK_SIZE} tokens per honest trace. Detection = share "
        "of inflated test requests flagged (semantic checks or the length flag); sequential "
        "rounds of 8 positions, early stop on a finding or when every block is open. "
        "`k=K`: K positions; `<=64 blocks`: K=64 positions, then rounds go on until 64 blocks "
        "(or all) are open. **learned**: the block classifier and lone copies "
        "(`metering/block_classifier.py`, shipped weights); **cut-offs**: the previous fixed "
        "per-statistic limits (`metering/semantic.py`); **both**: either flags, what "
        "`fairgate audit` runs by default (`--blocks 64`).",
        "",
        "| attack | inflation | "
        + " | ".join(f"learned {label(p)}" for p in learned_cols)
        + " | **both <=64 blocks** | blocks opened (<=64 blocks) | cut-offs k=64 "
        "| cut-offs <=64 blocks | length flag alone | bound 1-(1-f/(1+f))^64 |",
        "|---|---|" + "---|" * len(learned_cols) + "---|---|---|---|---|---|",
    ]
    wide = (64, 64)
    for attack in ATTACKS:
        for f in INFLATIONS:
            cells = " | ".join(
                f"{flag[(attack, f, 'learned', p, 'all')]:.1%}" for p in learned_cols
            )
            cut = " | ".join(
                f"{flag[(attack, f, 'cutoffs', p, 'all')]:.1%}" for p in CUTOFF_SCHEDULES
            )
            lines.append(
                f"| {attack} | {f:.0%} | {cells} | "
                f"**{flag[(attack, f, 'both', wide, 'all')]:.1%}** | "
                f"{opened[(attack, f, 'learned', wide)]:.1f} | {cut} | "
                f"{rows['length_only'][(attack, f)]:.1%} | {detection_bound(64, f):.3f} |"
            )
    lines += [
        "",
        "| honest test requests | "
        + " | ".join(label(p) for p in learned_cols)
        + " | cut-offs k=64 | cut-offs <=64 blocks | both k=64 | **both <=64 blocks** |",
        "|---|" + "---|" * (len(learned_cols) + 4),
    ]
    for what, name in (("all", "all flags"), ("semantic", "semantic only")):
        cells = [flag[("honest", 0.0, "learned", p, what)] for p in learned_cols]
        cells += [flag[("honest", 0.0, "cutoffs", p, what)] for p in CUTOFF_SCHEDULES]
        cells += [flag[("honest", 0.0, "both", p, what)] for p in CUTOFF_SCHEDULES]
        lines.append(f"| false positives, {name} | " + " | ".join(f"{c:.2%}" for c in cells) + " |")
    cells = [opened[("honest", 0.0, "learned", p)] for p in learned_cols]
    cells += [opened[("honest", 0.0, "cutoffs", p)] for p in CUTOFF_SCHEDULES]
    cells += [math.nan, math.nan]
    lines += [
        "| blocks opened | "
        + " | ".join("" if math.isnan(c) else f"{c:.1f}" for c in cells)
        + " |",
        "",
        f"Length flag alone on honest test requests: {rows['length_fp']:.2%} false positives. "
        f"Learned: threshold {model.threshold:.2f} on the top block log-odds, "
        f"{model.lift_threshold:.2f} on its lift over the request's median, "
        f"{model.gap_threshold:.2f} on the run gap, copies limit "
        f"{model.copies_limit} ({model.trained_on}). Cut-offs: block floor {th.block_floor}, "
        f"duplicate cosine {th.dup_cosine}, near-duplicate cosine {th.near_cosine}, adjacent "
        f"floor {th.adjacent_floor}; per-count limits at the {1 - ALPHA:.1%} honest quantile "
        "(metering/calibration.py).",
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
