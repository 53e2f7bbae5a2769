"""Fit the learned block classifier on the calibration half only, and set its limits.

    python -m bench.audit.train      # writes metering/block_classifier.json

Training rows: every block of the honest calibration traces (label 0) and of synthetic attacks
made from calibration traces only (random padding from a pool of its own seed, repeats, splices
and adaptive filler with calibration donors; the added blocks label 1), each seen with a random
share of its blocks open, as an audit sees it. The threshold: out-of-fold (four folds by
problem), each honest calibration trace is audited by a model that never saw its problem, under
the bench's sampling schedules, and the three score limits (the top block score, its lift over
the request's median, the best run gap) are their honest quantiles at one common level, the
least at which at most ``ALPHA`` of those traces exceed any of them. The copies limit: the least
count that at most ``ALPHA`` of the honest calibration traces reach, under the copy rule
``COPY_RULE`` (stored in the JSON with the limits). No test trace is read.

    python -m bench.audit.train --copies-only   # keep the weights and score limits; set the
                                                # copy rule and both copies limits
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.audit.attacks import ATTACKS, INFLATIONS
from bench.audit.embed_cache import EmbeddingCache
from bench.audit.simulate import learned, sequential
from bench.audit.traces import Trace
from fairgate.metering import block_classifier
from fairgate.metering.block_classifier import BlockClassifier, Evidence, design

REPO = Path(__file__).resolve().parents[2]
ALPHA = 0.004  # per flag: filler and copies (with the length flag, under 1% together)
ROWS = 150_000  # rows kept for the fit (a uniform subsample; Newton on 400 columns)
FOLDS = 4
ATTACK_WEIGHT = 0.3  # attacked traces outnumber honest ones 25 to 1
SHORT_BLOCKS = 20  # under this many blocks, no honest calibration trace has a lone copy
# The copy rule (metering/block_classifier.py, copies()), the first release's. The rule chosen
# on the calibration half (--loop-context 0.8 --neighbour-rule: limits 3 / 2) was not shipped:
# 1.42% honest false positives on the test half (bench/RESULTS.md, "the copies statistic").
COPY_RULE = {
    "loop_context": block_classifier.LOOP_CONTEXT,
    "list_context": block_classifier.LIST_CONTEXT,
    "copy_neighbours_open": block_classifier.NEIGHBOURS_OPEN,
}
INF = float("inf")


def fold_of(problem: str) -> int:
    return hashlib.sha256(problem.encode()).digest()[0] % FOLDS


Honest = list[tuple[Trace, np.ndarray, np.ndarray]]  # trace, block vectors, prompt/answer
Attacked = list[tuple[Trace, np.ndarray, np.ndarray, frozenset[int]]]


def rows(
    honest: Honest, attacked: Attacked, rng: random.Random
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, ws, folds = [], [], [], []
    items = [(t, v, c, frozenset(), 1.0) for t, v, c in honest]
    items += [(t, v, c, p, ATTACK_WEIGHT) for t, v, c, p in attacked]
    for trace, vectors, context, padded, weight in items:
        n = len(vectors)
        shares = (1.0, rng.uniform(0.5, 0.9)) if not padded else (rng.uniform(0.5, 1.0),)
        for share in shares:
            index = sorted(rng.sample(range(n), max(1, round(n * share))))
            xs.append(design(index, n, vectors[index], context[0], context[1]))
            ys.append(np.array([i in padded for i in index], dtype=np.float64))
            ws.append(np.full(len(index), weight))
            folds.append(np.full(len(index), fold_of(trace.problem)))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ws), np.concatenate(folds)


def attacked_cases(
    cal: list[Trace], provider: object, cache: EmbeddingCache, block_size: int
) -> Attacked:
    out: Attacked = []
    for attack in ATTACKS:
        if attack == "overbill":
            continue  # the count check catches it; no block is added
        for f in INFLATIONS:
            for t in cal:
                inflated = provider.inflate(attack, t, f)  # type: ignore[attr-defined]
                cache.ensure(inflated.blocks)
                out.append((t, cache.vectors(inflated.blocks), context(t, cache), inflated.padded))
    return out


def context(t: Trace, cache: EmbeddingCache) -> np.ndarray:
    return cache.vectors([t.prompt, t.answer])


def audited(
    model: BlockClassifier,
    traces: Iterable[tuple[Trace, np.ndarray, np.ndarray]],
    block_size: int,
    schedules: Iterable[tuple[int, int | None]],
) -> list[Evidence]:
    """Per honest trace, each statistic's most over every look of every schedule."""
    out: list[Evidence] = []
    never = replace(
        model,
        threshold=INF,
        copies_limit=10**9,
        short_copies_limit=10**9,
        lift_threshold=INF,
        gap_threshold=INF,
    )
    plan = list(schedules)
    for t, vectors, ctx in traces:
        seen = Evidence()
        for samples, max_blocks in plan:
            seed = hashlib.sha256(f"cal/{t.problem}/{t.model}/{samples}".encode()).digest()
            result = sequential(
                f"{t.problem}/{t.model}",
                vectors,
                block_size,
                samples,
                learned(ctx, len(vectors), never),
                seed,
                max_blocks,
            )
            seen = seen.most(result.evidence)
        out.append(seen)
    return out


def score_limits(evidence: list[Evidence], alpha: float = ALPHA) -> tuple[float, float, float]:
    """Limits on (top, lift, gap): each statistic's honest quantile at the least common level
    at which at most ``alpha`` of the traces exceed any of the three."""
    m = np.asarray([(e.top, e.lift, e.gap) for e in evidence], dtype=np.float64)
    for q in np.linspace(1 - alpha, 1.0, 401):
        limits = np.quantile(m, q, axis=0, method="higher")
        if np.mean((m > limits).any(axis=1)) <= alpha:
            break
    top, lift, gap = (float(v) for v in limits)
    return top, lift, gap


def train(
    honest: Honest,
    attacked: Attacked,
    block_size: int,
    schedules: list[tuple[int, int | None]],
    seed: int = 1,
    rule: dict[str, Any] | None = None,
) -> BlockClassifier:
    rule = COPY_RULE if rule is None else rule
    x, y, w, folds = rows(honest, attacked, random.Random(seed))
    keep = np.random.default_rng(seed).random(len(x)) < ROWS / len(x)
    x, y, w, folds = x[keep], y[keep], w[keep], folds[keep]
    evidence: list[Evidence] = []
    for k in range(FOLDS):
        model = block_classifier.fit(x[folds != k], y[folds != k], w[folds != k])
        held = [h for h in honest if fold_of(h[0].problem) == k]
        evidence += audited(replace(model, **rule), held, block_size, schedules)
        print(f"fold {k}: {len(held)} honest traces held out", flush=True)
    threshold, lift, gap = score_limits(evidence)
    limit = copies_limit(evidence)
    final = with_short_limit(
        replace(block_classifier.fit(x, y, w), **rule), honest, block_size, schedules
    )
    return replace(
        final,
        threshold=threshold,
        lift_threshold=lift,
        gap_threshold=gap,
        copies_limit=limit,
        trained_on=(
            f"{len(honest)} honest CHAMP 0-Shot calibration traces (champ-dataset 1.0.0) and "
            f"{len(attacked)} synthetic attacks on them; {len(x)} block rows; blocks of "
            f"{block_size}; limits at the {1 - ALPHA:.1%} out-of-fold honest quantile "
            "(top, lift and run gap together)"
        ),
    )


def copies_limit(evidence: list[Evidence], least: int = 1) -> int:
    """The least count of lone copies that at most ``ALPHA`` of the honest traces reach."""
    c = np.asarray([e.copies for e in evidence])
    return next(L for L in range(least, 10**6) if np.mean(c >= L) <= ALPHA)


def with_copy_rule(
    model: BlockClassifier,
    honest: Honest,
    block_size: int,
    schedules: list[tuple[int, int | None]],
    rule: dict[str, Any],
) -> BlockClassifier:
    """``model`` (weights and score limits kept) under the copy ``rule``, with both copies
    limits set again. Lone copies do not depend on the weights, and an audit with every limit
    off never stops early, so the shipped model's count is each fold model's count: the same
    limits a full refit sets."""
    ruled = replace(model, **rule)
    limit = copies_limit(audited(ruled, honest, block_size, schedules))
    print(f"{len(honest)} honest traces: copies limit {limit}", flush=True)
    return with_short_limit(replace(ruled, copies_limit=limit), honest, block_size, schedules)


def with_short_limit(
    model: BlockClassifier, honest: Honest, block_size: int, schedules: list[tuple[int, int | None]]
) -> BlockClassifier:
    """The lone-copies limit for requests under ``SHORT_BLOCKS`` blocks: the least count that
    at most ``ALPHA`` of those honest calibration traces reach, and never under 2 (a copy and
    its original). Lone copies do not depend on the weights, so no fold is needed."""
    short = [h for h in honest if len(h[1]) < SHORT_BLOCKS]
    limit = copies_limit(audited(model, short, block_size, schedules), least=2)
    print(f"{len(short)} honest traces under {SHORT_BLOCKS} blocks: copies limit {limit}")
    return replace(model, short_blocks=SHORT_BLOCKS, short_copies_limit=limit)


def write(model: BlockClassifier) -> Path:
    path = REPO / "metering" / block_classifier.DATA
    path.write_text(json.dumps(model.to_dict(), separators=(",", ":")) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    import argparse

    from bench.audit.run import prepare

    parser = argparse.ArgumentParser(prog="python -m bench.audit.train")
    parser.add_argument(
        "--short-only", action="store_true",
        help="keep the shipped weights and limits; set only the short-request copies limit",
    )  # fmt: skip
    parser.add_argument(
        "--copies-only", action="store_true",
        help="keep the shipped weights and score limits; set the copy rule and both copies "
        "limits (the same limits a full refit sets: lone copies do not depend on the weights)",
    )  # fmt: skip
    parser.add_argument(
        "--loop-context", type=float, default=COPY_RULE["loop_context"],
        help="twins whose neighbours match at least this well are a loop, not a copy "
        "(default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--list-context", type=float, default=COPY_RULE["list_context"],
        help="a block this close to a neighbour sits in a list (default %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--neighbour-rule", action="store_true",
        default=COPY_RULE["copy_neighbours_open"],
        help="count a copy only once its own neighbours are open too (default: off)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    rule = {
        "loop_context": args.loop_context,
        "list_context": args.list_context,
        "copy_neighbours_open": args.neighbour_rule,
    }
    prepared = prepare()
    if args.copies_only:
        model = with_copy_rule(
            block_classifier.load(),
            prepared.cal_honest,
            prepared.block_size,
            prepared.schedules,
            rule,
        )
        print(
            f"wrote {write(model)}: copy rule {rule}, copies limit {model.copies_limit}, "
            f"short requests {model.short_copies_limit}"
        )
        return 0
    if args.short_only:
        model = with_short_limit(
            block_classifier.load(), prepared.cal_honest, prepared.block_size, prepared.schedules
        )
        print(f"wrote {write(model)}")
        return 0
    model = train(
        prepared.cal_honest, prepared.cal_attacked, prepared.block_size, prepared.schedules,
        rule=rule,
    )  # fmt: skip
    print(
        f"wrote {write(model)}: threshold {model.threshold:.3f}, lift {model.lift_threshold:.3f}, "
        f"gap {model.gap_threshold:.3f}, copies limit {model.copies_limit}, short requests "
        f"{model.short_copies_limit}, copy rule {rule}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
