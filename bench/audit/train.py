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
count that at most ``ALPHA`` of the honest calibration traces reach. No test trace is read.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

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
    never = replace(model, threshold=INF, copies_limit=10**9, lift_threshold=INF, gap_threshold=INF)
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
) -> BlockClassifier:
    x, y, w, folds = rows(honest, attacked, random.Random(seed))
    keep = np.random.default_rng(seed).random(len(x)) < ROWS / len(x)
    x, y, w, folds = x[keep], y[keep], w[keep], folds[keep]
    evidence: list[Evidence] = []
    for k in range(FOLDS):
        model = block_classifier.fit(x[folds != k], y[folds != k], w[folds != k])
        held = [h for h in honest if fold_of(h[0].problem) == k]
        evidence += audited(model, held, block_size, schedules)
        print(f"fold {k}: {len(held)} honest traces held out", flush=True)
    threshold, lift, gap = score_limits(evidence)
    copies = np.asarray([e.copies for e in evidence])
    limit = next(L for L in range(1, 10**6) if np.mean(copies >= L) <= ALPHA)
    final = with_short_limit(block_classifier.fit(x, y, w), honest, block_size, schedules)
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


def with_short_limit(
    model: BlockClassifier, honest: Honest, block_size: int, schedules: list[tuple[int, int | None]]
) -> BlockClassifier:
    """The lone-copies limit for requests under ``SHORT_BLOCKS`` blocks: the least count that
    at most ``ALPHA`` of those honest calibration traces reach, and never under 2 (a copy and
    its original). Lone copies do not depend on the weights, so no fold is needed."""
    short = [h for h in honest if len(h[1]) < SHORT_BLOCKS]
    c = np.asarray([e.copies for e in audited(model, short, block_size, schedules)])
    limit = next(L for L in range(2, 10**6) if np.mean(c >= L) <= ALPHA)
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
    args = parser.parse_args(argv)
    prepared = prepare()
    if args.short_only:
        model = with_short_limit(
            block_classifier.load(), prepared.cal_honest, prepared.block_size, prepared.schedules
        )
        print(f"wrote {write(model)}")
        return 0
    model = train(
        prepared.cal_honest, prepared.cal_attacked, prepared.block_size, prepared.schedules
    )
    print(
        f"wrote {write(model)}: threshold {model.threshold:.3f}, lift {model.lift_threshold:.3f}, "
        f"gap {model.gap_threshold:.3f}, copies limit {model.copies_limit}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
