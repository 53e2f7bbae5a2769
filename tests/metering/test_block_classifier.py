"""The learned block classifier: its features, the shipped weights, and each attack in a case."""

from __future__ import annotations

import random
from dataclasses import replace
from importlib import resources
from typing import Any

import numpy as np
import pytest

from fairgate.metering import block_classifier
from fairgate.metering.audit import answer_challenge
from fairgate.metering.audit_check import Reason
from fairgate.metering.auditor import MAX_ROUNDS, Checks, audit, next_round
from fairgate.metering.block_classifier import copies, design, fit, run_gap
from fairgate.metering.block_features import NAMES, features
from fairgate.metering.calibration import LENGTH, THRESHOLDS
from fairgate.metering.record import Receipt
from tests.metering.test_audit_v2 import (
    BLOCK,
    KEY,
    OTHER_DOMAIN,
    committed,
    embedder,
    signed_record,
)

__all__ = ["embedder"]  # the fixture, shared with test_audit_v2


def unit(rng: np.random.Generator, n: int, dim: int = 384) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def learned(embedder: Any) -> Checks:
    """The shipped classifier alone (the fixed cut-offs off), as the CLI runs it by default."""
    return Checks(
        embed=embedder.embed,
        thresholds=THRESHOLDS,
        length=LENGTH,
        classifier=block_classifier.load(),
        cutoffs=False,
    )


def test_features_need_only_indices_and_embeddings() -> None:
    rng = np.random.default_rng(0)
    vectors, context = unit(rng, 6), unit(rng, 2)
    rows = features([0, 1, 2, 5, 6, 9], 10, vectors, context[0], context[1])
    assert rows.shape == (6, len(NAMES))
    col = dict(zip(NAMES, range(len(NAMES)), strict=True))
    assert rows[:, col["has_prev"]].tolist() == [0, 1, 1, 0, 1, 0]
    assert rows[:, col["has_next"]].tolist() == [1, 1, 0, 1, 0, 0]
    assert np.allclose(rows[:, col["rel_prompt"]], vectors @ context[0])
    assert features([], 10, vectors[:0], context[0], context[1]).shape == (0, len(NAMES))


def test_a_lone_copy_counts_and_a_loop_does_not() -> None:
    rng = np.random.default_rng(1)
    base, context = unit(rng, 8), unit(rng, 2)
    pasted = np.concatenate([base[:6], base[1:2], base[6:]])  # block 1 again, at 6
    x = design(list(range(9)), 9, pasted, context[0], context[1])
    assert copies(x[:, : len(NAMES)]) == 2  # the copy and its original
    looped = np.concatenate([base[:6], base[2:5]])  # blocks 2..4 again: a loop
    x = design(list(range(9)), 9, looped, context[0], context[1])
    assert copies(x[:, : len(NAMES)]) == 0


def rows_of(vectors: np.ndarray, blocks: list[int], total: int, seed: int = 0) -> np.ndarray:
    context = unit(np.random.default_rng(seed), 2, vectors.shape[1])
    return features(blocks, total, vectors[blocks], context[0], context[1])


def test_a_copy_counts_only_with_its_neighbours_open_under_the_neighbour_rule() -> None:
    rng = np.random.default_rng(7)
    base = unit(rng, 8)
    pasted = np.concatenate([base[:6], base[1:2], base[6:]])  # block 1 again, at 6 (of 9)
    every = list(range(9))
    rows = rows_of(pasted, every, 9)
    assert copies(rows, every, 9, neighbours_open=True) == copies(rows) == 2
    no_next = [0, 1, 2, 3, 4, 5, 6, 8]  # the copy's next block (7) is closed
    rows = rows_of(pasted, no_next, 9)
    assert copies(rows) == 2  # the first release's rule counts it anyway
    assert copies(rows, no_next, 9, neighbours_open=True) == 1  # the original alone
    no_prev = [0, 1, 2, 3, 4, 6, 7, 8]  # its previous block (5) is closed
    assert copies(rows_of(pasted, no_prev, 9), no_prev, 9, neighbours_open=True) == 1
    # At the request's edges only the neighbour that exists must be open.
    at_end = np.concatenate([base, base[1:2]])  # block 1 again, as the last block (8)
    rows = rows_of(at_end, every, 9)
    assert copies(rows, every, 9, neighbours_open=True) == 2
    at_start = np.concatenate([base[5:6], base])  # block 6 again, as the first block (0)
    rows = rows_of(at_start, every, 9)
    assert copies(rows, every, 9, neighbours_open=True) == copies(rows) == 2
    with pytest.raises(ValueError):
        copies(rows, neighbours_open=True)


def near_loop(rng: np.random.Generator, cosine: float) -> np.ndarray:
    """Block 1 pasted again at 6, where block 7 matches block 2 (the twins' next neighbours)
    at ``cosine``: a loop under a cut below it, a lone copy under a cut above it."""
    base = unit(rng, 8)
    other = base[7] - (base[7] @ base[2]) * base[2]
    other /= np.linalg.norm(other)
    out = np.concatenate([base[:6], base[1:2], base[6:]])
    out[7] = cosine * base[2] + np.sqrt(1 - cosine**2) * other
    return out


def plain() -> block_classifier.BlockClassifier:
    """A classifier for 384-dimensional embeddings whose scores never flag (copies only)."""
    width = len(NAMES) + 384
    ones, zeros = np.ones(width, dtype=np.float32), np.zeros(width, dtype=np.float32)
    return block_classifier.BlockClassifier(zeros, ones, zeros, -1.0, 100.0, 10**9)


def test_the_loop_cut_is_read_from_the_weights() -> None:
    vectors = near_loop(np.random.default_rng(8), 0.85)
    every = list(range(9))
    context = unit(np.random.default_rng(9), 2)
    rows = features(every, 9, vectors, context[0], context[1])
    assert rows[:, NAMES.index("twin_context")].max() == pytest.approx(0.85, abs=1e-4)
    data = plain().to_dict()
    for loop, lone in ((0.9, 2), (0.8, 0)):
        model = block_classifier.BlockClassifier.from_dict({**data, "loop_context": loop})
        assert model.loop_context == loop
        assert model.evidence(every, 9, vectors, context[0], context[1])[0].copies == lone
    # The list cut too: the copy's previous block made 0.75 alike to it sits in a list under a
    # cut of 0.7, not under 0.8 (the original's neighbours stay unlike it: it still counts).
    other = vectors[5] - (vectors[5] @ vectors[6]) * vectors[6]
    vectors[5] = 0.75 * vectors[6] + np.sqrt(1 - 0.75**2) * other / np.linalg.norm(other)
    for cut, lone in ((0.8, 2), (0.7, 1)):
        listed = block_classifier.BlockClassifier.from_dict({**data, "list_context": cut})
        assert listed.list_context == cut
        assert listed.evidence(every, 9, vectors, context[0], context[1])[0].copies == lone


def test_old_weights_without_the_copy_rule_keep_the_first_release_rule() -> None:
    model = replace(
        plain(),
        loop_context=0.8,
        list_context=0.7,
        copy_neighbours_open=True,
    )
    again = block_classifier.BlockClassifier.from_dict(model.to_dict())
    assert (again.loop_context, again.list_context, again.copy_neighbours_open) == (
        0.8,
        0.7,
        True,
    )
    rule = ("loop_context", "list_context", "copy_neighbours_open")
    old = {k: v for k, v in model.to_dict().items() if k not in rule}
    legacy = block_classifier.BlockClassifier.from_dict(old)
    assert (legacy.loop_context, legacy.list_context, legacy.copy_neighbours_open) == (
        0.9,
        0.8,
        False,
    )
    rng = np.random.default_rng(10)
    context = unit(rng, 2)
    for vectors in (near_loop(rng, 0.85), near_loop(rng, 0.95)):
        for blocks in (list(range(9)), [0, 1, 2, 3, 4, 5, 6, 8]):
            x = features(blocks, 9, vectors[blocks], context[0], context[1])
            seen = legacy.evidence(blocks, 9, vectors[blocks], context[0], context[1])[0]
            assert seen.copies == copies(x)  # the first release's count, exactly


def test_a_short_request_is_held_to_its_own_copies_limit() -> None:
    model = replace(block_classifier.load(), copies_limit=5, short_blocks=20, short_copies_limit=3)
    assert model.limit_for(19) == 3 and model.limit_for(20) == 5
    again = block_classifier.BlockClassifier.from_dict(model.to_dict())
    assert (again.short_blocks, again.short_copies_limit) == (20, 3)
    shipped = block_classifier.load()
    assert 2 <= shipped.short_copies_limit < shipped.copies_limit and shipped.short_blocks > 0


def test_fit_separates_what_is_separable() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((400, 3))
    y = (x[:, 0] > 0).astype(np.float64)
    model = fit(x, y, np.ones(400))
    assert ((model.scores(x) > 0) == (y > 0)).mean() > 0.97


def test_the_shipped_classifier_loads_and_is_small() -> None:
    data = resources.files("fairgate.metering").joinpath(block_classifier.DATA)
    assert len(data.read_bytes()) < 1_000_000
    model = block_classifier.load()
    assert model.weights.shape == model.mean.shape == (len(NAMES) + 384,)
    assert np.isfinite(model.threshold) and model.copies_limit >= 2
    assert np.isfinite(model.lift_threshold) and np.isfinite(model.gap_threshold)
    assert "calibration" in model.trained_on


def test_next_round_keeps_to_the_block_budget() -> None:
    assert next_round(64, None, 10, 0) == 8
    assert next_round(64, None, 30, 64) == 0
    assert next_round(64, 64, 30, 64) == 34
    assert next_round(64, 64, 64, 80) == 0


# -- each attack on a real trace (CHAMP, a calibration-half problem), through the whole protocol --


@pytest.fixture(scope="module")
def champ() -> dict[str, Any]:
    pytest.importorskip("champ_dataset")
    from bench.audit.traces import load_traces

    wanted = {"P_Combinatorics_7", "P_Inequality_15", "P_Number-Theory_72"}
    found = {(t.problem, t.model): t for t in load_traces(settings=("0-Shot",))
             if t.problem in wanted}  # fmt: skip
    return {
        "trace": found[("P_Combinatorics_7", "GPT-4|0-Shot")],
        "donor": found[("P_Inequality_15", "GPT-4|0-Shot")],
        "short": found[("P_Combinatorics_7", "GPT-3.5|0-Shot")],  # 12 blocks
        "splice": found[("P_Number-Theory_72", "GPT-4|0-Shot")],
    }


def audit_trace(blocks: list[str], trace: Any, embedder: Any, checks: Checks) -> Any:
    committer = committed(blocks, embedder)
    opening = committer.opening()
    record = signed_record(opening)
    rng = random.Random(1)
    nonces = iter([rng.randbytes(32) for _ in range(MAX_ROUNDS)])
    return audit(
        lambda ch: answer_challenge(record, opening, ch).to_dict(),
        Receipt.from_record(record),
        [KEY.public_key],
        trace.prompt,
        trace.answer,
        checks,
        samples=64,
        max_blocks=64,
        nonce=lambda: next(nonces),
    )


def reasons(verdict: Any) -> set[Reason]:
    return {f.reason for f in verdict.findings}


def test_an_honest_trace_passes_with_every_block_open(
    champ: dict[str, Any], embedder: Any, learned: Checks
) -> None:
    blocks = champ["trace"].block_texts(BLOCK)
    verdict = audit_trace(blocks, champ["trace"], embedder, learned)
    assert verdict.honest, [str(f) for f in verdict.findings]
    assert verdict.blocks_opened == len(blocks)  # the block budget, not 64 positions


def test_random_token_padding_is_filler(
    champ: dict[str, Any], embedder: Any, learned: Checks
) -> None:
    from bench.audit.traces import tokenizer

    tok, rng = tokenizer(), random.Random(3)
    vocab = tok.get_vocab_size()
    blocks = champ["trace"].block_texts(BLOCK)
    for at in (30, 21, 12, 4):  # 4 blocks into 35: 11% inflation
        blocks.insert(at, " " + tok.decode([rng.randrange(1000, vocab) for _ in range(BLOCK)]))
    verdict = audit_trace(blocks, champ["trace"], embedder, learned)
    assert Reason.FILLER in reasons(verdict), verdict.to_dict()


def test_pasted_copies_are_duplicates(
    champ: dict[str, Any], embedder: Any, learned: Checks
) -> None:
    honest = champ["trace"].block_texts(BLOCK)
    blocks = list(honest)
    for at, block in ((31, 3), (24, 9), (17, 28), (10, 20), (5, 14)):  # 14% inflation
        blocks.insert(at, honest[block])
    verdict = audit_trace(blocks, champ["trace"], embedder, learned)
    assert Reason.DUPLICATE in reasons(verdict), verdict.to_dict()


@pytest.mark.parametrize("cutoffs", [False, True])
def test_a_splice_from_another_domain_is_caught_by_the_shipped_checks(
    champ: dict[str, Any], embedder: Any, learned: Checks, cutoffs: bool
) -> None:
    # The classifier was trained on math traces only; prose about photosynthesis scores under
    # its top threshold, but far above the request's own blocks (the lift). The fixed relevance
    # cut-offs (--checks both) catch it too.
    honest = champ["trace"].block_texts(BLOCK)
    blocks = honest[:17] + OTHER_DOMAIN + honest[17:]  # 23% inflation
    shipped = replace(learned, cutoffs=cutoffs)
    verdict = audit_trace(blocks, champ["trace"], embedder, shipped)
    assert reasons(verdict) & {Reason.IRRELEVANT, Reason.SPLICED, Reason.FILLER}, verdict.to_dict()
    assert audit_trace(honest, champ["trace"], embedder, shipped).honest


def test_two_copies_in_a_short_request_are_duplicates(
    champ: dict[str, Any], embedder: Any, learned: Checks
) -> None:
    # The bench's 10% repeat attack on a 12-block trace: ceil(1.2) = 2 copies. Under the
    # long-request limit (5 lone copies) it passed.
    honest = champ["short"].block_texts(BLOCK)
    assert len(honest) < block_classifier.load().short_blocks
    blocks = list(honest)
    for at, block in ((9, 2), (4, 7)):
        blocks.insert(at, honest[block])
    verdict = audit_trace(blocks, champ["short"], embedder, learned)
    assert Reason.DUPLICATE in reasons(verdict), verdict.to_dict()
    assert audit_trace(honest, champ["short"], embedder, learned).honest


# -- request-level evidence: the lift of the top score and the run gap --------------------------


def test_run_gap_finds_a_run_that_stands_above_the_rest() -> None:
    rng = np.random.default_rng(4)
    honest = rng.normal(-2.0, 1.0, 30)
    spliced = honest.copy()
    spliced[12:16] += 2.5  # four blocks that each score only mildly higher
    assert run_gap(spliced) > run_gap(honest) + 1.5
    assert run_gap(np.full(10, -1.0)) == pytest.approx(0.0)
    assert run_gap(np.array([5.0, -1.0, -1.0, -1.0])) == float("-inf")  # too few to split


def steered(gap: float, lift: float) -> block_classifier.BlockClassifier:
    """A classifier that scores a block by its embedding's first component alone."""
    width = len(NAMES) + 8
    weights = np.zeros(width, dtype=np.float32)
    weights[len(NAMES)] = 10.0
    ones, zeros = np.ones(width, dtype=np.float32), np.zeros(width, dtype=np.float32)
    return block_classifier.BlockClassifier(
        zeros, ones, weights, -1.0, 100.0, 10**9, lift_threshold=lift, gap_threshold=gap
    )


def test_a_run_of_mildly_odd_blocks_is_spliced_and_an_even_request_passes() -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 24, 8) * 0.2
    vectors[:, 0] = 0.0
    context = unit(rng, 2, 8)
    model = steered(gap=1.5, lift=100.0)
    evidence, found = model.judge(list(range(24)), 24, vectors, context[0], context[1])
    assert found == [] and evidence.gap < 1.5 and evidence.top < model.threshold
    vectors[9:13, 0] = 0.3  # each block's score rises by 3, far under the top threshold
    evidence, found = model.judge(list(range(24)), 24, vectors, context[0], context[1])
    assert evidence.top < model.threshold and evidence.gap > 1.5
    assert [f.reason for f in found] == [Reason.SPLICED]


def test_a_block_far_above_its_own_request_is_filler_by_its_lift() -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 16, 8) * 0.2
    vectors[:, 0] = 0.0
    vectors[7, 0] = 0.5  # one block 5 above the median, under the top threshold
    context = unit(rng, 2, 8)
    evidence, found = steered(gap=100.0, lift=4.0).judge(
        list(range(16)), 16, vectors, context[0], context[1]
    )
    assert evidence.lift > 4.0 and [f.reason for f in found] == [Reason.FILLER]
    assert (
        steered(gap=100.0, lift=6.0).judge(list(range(16)), 16, vectors, context[0], context[1])[1]
        == []
    )


def test_the_score_limits_round_trip_and_old_weights_have_none() -> None:
    model = steered(gap=1.25, lift=3.5)
    again = block_classifier.BlockClassifier.from_dict(model.to_dict())
    assert (again.gap_threshold, again.lift_threshold) == (1.25, 3.5)
    old = {k: v for k, v in model.to_dict().items() if k not in ("gap_threshold", "lift_threshold")}
    legacy = block_classifier.BlockClassifier.from_dict(old)
    assert legacy.gap_threshold == legacy.lift_threshold == float("inf")


def test_a_splice_of_mildly_odd_blocks_is_caught_by_the_run_gap(
    champ: dict[str, Any], embedder: Any, learned: Checks
) -> None:
    # Another category's solution pasted at one place (the bench's splice_other at 100%): no
    # block scores above the top threshold, nor far above the request's median; the run does.
    # (Of 456 such splices of this trace, one per donor and length, few are caught this way.)
    honest = champ["trace"].block_texts(BLOCK)
    blocks = honest[:17] + champ["splice"].block_texts(BLOCK)[:35] + honest[17:]
    verdict = audit_trace(blocks, champ["trace"], embedder, learned)
    assert reasons(verdict) == {Reason.SPLICED}, verdict.to_dict()
    assert audit_trace(honest, champ["trace"], embedder, learned).honest
