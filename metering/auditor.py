"""A whole audit: sequential challenges, the protocol checks, the semantic checks, the length flag.

:func:`audit` is what ``fairgate audit`` runs, callable from Python with any ``send`` (a
function that posts a :class:`Challenge` and returns the gateway's JSON answer).

**Sample size.** A provider that inflates a bill by ``f`` adds ``f/(1+f)`` of the billed
tokens; ``k`` uniform positions all miss them with probability ``(1 - f/(1+f))^k``, so
:func:`samples_for` gives the least ``k`` with ``1 - (1 - f/(1+f))^k >= confidence`` (49 for
10% at 99%). This bounds catching *a padded block in the sample*; whether a sampled padded block
is recognised is the semantic checks' part, measured in ``bench/audit``.

**Sequential.** Positions are opened in rounds of ``step`` (each round a fresh nonce, the last
position always included), and the audit stops as soon as a round fails, or once every block of
the request is open (more samples would show nothing new), or at ``k``. With ``max_blocks`` the
budget is opened blocks rather than positions: past ``k``, rounds go on (each asking for at most
as many positions as blocks may still be opened, so never more than ``max_blocks`` are) until
that many blocks, or all of them, are open, or after ``MAX_ROUNDS`` rounds.

Pure apart from the ``send`` and ``embed`` callables it is given; nonces come from
``os.urandom``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from fairgate.metering import semantic
from fairgate.metering.audit import MAX_SAMPLES, REVEAL_EMBEDDINGS, Challenge
from fairgate.metering.audit_check import (
    AuditReport,
    Finding,
    Reason,
    Retokenize,
    Severity,
    TokenPolicy,
    VerifiedBlock,
    verify_audit,
)
from fairgate.metering.block_classifier import BlockClassifier
from fairgate.metering.embedding import dequantize_vectors
from fairgate.metering.estimator import LengthModel, LengthRange
from fairgate.metering.record import Receipt
from fairgate.metering.signing import PublicKey

Send = Callable[[Challenge], Any]
Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]
DEFAULT_CONFIDENCE = 0.99
DEFAULT_MIN_INFLATION = 0.10
STEP = 8
MAX_ROUNDS = 24
DEFAULT_MAX_BLOCKS = 64  # the acceptance's budget of opened blocks


def samples_for(confidence: float, min_inflation: float = DEFAULT_MIN_INFLATION) -> int:
    """The least ``k`` that samples a padded position with probability ``confidence``."""
    if not 0 < confidence < 1:
        raise ValueError("confidence must be in (0, 1)")
    if min_inflation <= 0:
        raise ValueError("min_inflation must be > 0")
    share = min_inflation / (1 + min_inflation)
    return min(MAX_SAMPLES, math.ceil(math.log(1 - confidence) / math.log(1 - share)))


def detection_bound(samples: int, inflation: float) -> float:
    share = inflation / (1 + inflation)
    return 1 - (1 - share) ** samples


def next_round(
    samples: int, max_blocks: int | None, opened: int, asked: int, step: int = STEP
) -> int:
    """Positions the next round asks for (0: stop). Within ``samples``, rounds of ``step``;
    past it, as many as blocks may still be opened under ``max_blocks``."""
    if asked < samples:
        return min(step, samples - asked)
    if max_blocks is None:
        return 0
    return min(MAX_SAMPLES, max(0, max_blocks - opened))


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of a whole audit: ``honest``, ``inflated`` or ``unverifiable``."""

    request_id: str
    leaves: int
    rounds: int
    samples: int  # positions asked for, all rounds together
    blocks_opened: int
    findings: tuple[Finding, ...]
    statistics: semantic.Statistics | None
    expected: LengthRange | None
    reports: tuple[AuditReport, ...] = field(repr=False, default=())

    @property
    def unverifiable(self) -> bool:
        return any(r.unverifiable for r in self.reports)

    @property
    def honest(self) -> bool:
        return not self.unverifiable and not any(f.severity is Severity.FAIL for f in self.findings)

    @property
    def state(self) -> str:
        if self.unverifiable:
            return "unverifiable"
        return "honest" if self.honest else "inflated"

    def summary(self) -> str:
        text = (
            f"{self.state.upper()}: request {self.request_id}, {self.leaves} hidden tokens billed; "
            f"{self.rounds} round(s), {self.samples} positions, {self.blocks_opened} blocks opened"
        )
        if self.expected is not None:
            text += f"; prompt and answer predict {self.expected.low}..{self.expected.high}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.state,
            "request_id": self.request_id,
            "leaves": self.leaves,
            "rounds": self.rounds,
            "samples": self.samples,
            "blocks_opened": self.blocks_opened,
            "statistics": None if self.statistics is None else self.statistics.to_dict(),
            "expected_hidden_tokens": None if self.expected is None else self.expected.to_dict(),
            "findings": [f.to_dict() for f in self.findings],
        }


@dataclass(frozen=True, slots=True)
class Checks:
    """What the semantic half needs: an embedder, calibrated thresholds, the length model."""

    embed: Embed
    thresholds: semantic.Thresholds
    length: LengthModel | None = None
    splices: semantic.SpliceIndex | None = None
    classifier: BlockClassifier | None = None
    cutoffs: bool = True  # the fixed per-statistic cut-offs too (semantic.findings)


def block_vectors(blocks: Iterable[VerifiedBlock], embed: Embed) -> tuple[list[int], Any]:
    """Opened blocks' unit vectors: committed embeddings (v2) or the revealed text embedded (v1)."""
    chosen = list(blocks)
    vectors: Any = np.zeros((len(chosen), 0), dtype=np.float32)
    if all(b.embedding is not None for b in chosen):
        vectors = dequantize_vectors([b.embedding or b"" for b in chosen])
    else:
        vectors = embed([b.text or "" for b in chosen])
    return [b.start for b in chosen], vectors


def judge(
    request_id: str,
    starts: Sequence[int],
    vectors: Any,
    block_size: int,
    context: Any,
    checks: Checks,
    total: int = 0,
) -> tuple[semantic.Statistics, list[Finding]]:
    """The semantic statistics and findings of a request's opened blocks (``context``: the
    prompt's and the answer's unit vectors; ``total``: the request's block count)."""
    indices = [s // block_size for s in starts]
    stats = semantic.statistics(indices, vectors, context[0], context[1], checks.thresholds)
    found = semantic.findings(stats, checks.thresholds, block_size) if checks.cutoffs else []
    if checks.classifier is not None:
        total = max(total, indices[-1] + 1 if indices else 0)
        found += checks.classifier.judge(indices, total, vectors, context[0], context[1])[1]
    if checks.splices is not None:
        found += checks.splices.check(request_id, indices, vectors)
    return stats, found


def audit(
    send: Send,
    receipt: Receipt,
    public_keys: Sequence[PublicKey],
    prompt: str,
    answer: str,
    checks: Checks,
    *,
    samples: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    step: int = STEP,
    max_blocks: int | None = None,
    retokenize: Retokenize | None = None,
    token_policy: TokenPolicy = TokenPolicy.EXACT,
    nonce: Callable[[], bytes] = lambda: os.urandom(32),
    reveal: str = REVEAL_EMBEDDINGS,
) -> Verdict:
    """Audit ``receipt`` against the gateway behind ``send``; see the module docstring."""
    target = samples if samples is not None else samples_for(confidence)
    context = checks.embed([prompt, answer])
    reports: list[AuditReport] = []
    blocks: dict[int, VerifiedBlock] = {}
    found: list[Finding] = []
    stats: semantic.Statistics | None = None
    asked = rounds = 0
    while rounds < MAX_ROUNDS:
        take = next_round(target, max_blocks, len(blocks), asked, step)
        if take <= 0:
            break
        rounds += 1
        challenge = Challenge(receipt.request_id, nonce(), take, reveal)
        report = verify_audit(
            receipt,
            challenge,
            send(challenge),
            public_keys,
            retokenize=retokenize,
            token_policy=token_policy,
        )
        reports.append(report)
        asked += take
        found = [f for r in reports for f in r.findings]
        if not report.ok or report.unverifiable or not receipt.leaves:
            break
        for b in report.blocks:
            blocks.setdefault(b.start, b)
        block_size = report.block_size or 1
        starts, vectors = block_vectors((blocks[s] for s in sorted(blocks)), checks.embed)
        total = math.ceil(receipt.leaves / block_size)
        stats, semantic_found = judge(
            receipt.request_id, starts, vectors, block_size, context, checks, total
        )
        if semantic_found:
            found += semantic_found
            break
        if len(blocks) >= total:
            break  # every block is open: more samples show nothing new
    if checks.splices is not None and blocks and not found:
        starts, vectors = block_vectors((blocks[s] for s in sorted(blocks)), checks.embed)
        checks.splices.add(receipt.request_id, vectors)
    expected = None
    if checks.length is not None:
        expected = checks.length.predict(prompt, answer)
        flag = checks.length.check(receipt.leaves, prompt, answer)
        if flag is not None:
            found.append(flag)
    return Verdict(
        request_id=receipt.request_id,
        leaves=receipt.leaves,
        rounds=len(reports),
        samples=asked,
        blocks_opened=len(blocks),
        findings=tuple(found),
        statistics=stats,
        expected=expected,
        reports=tuple(reports),
    )


def unanswered(receipt: Receipt, detail: str) -> Verdict:
    """The gateway would not answer for ``receipt``: it signed a record it cannot back."""
    finding = Finding(Reason.UNANSWERED, detail)
    return Verdict(receipt.request_id, receipt.leaves, 0, 0, 0, (finding,), None, None)
