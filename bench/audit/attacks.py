"""A dishonest provider: it inflates a request's hidden tokens at generation time and commits
consistently to what it bills (the threat of CoIn, arXiv 2505.13778), except ``overbill``.

Each attack takes an honest trace's blocks and adds ``ceil(f * n)`` blocks for inflation ``f``,
inserted at block boundaries (an attacker who pads mid-block only mixes filler into honest blocks,
which lowers their relevance further):

* ``overbill``: bill ``f`` more hidden tokens than the tree commits (no new blocks).
* ``random``: blocks of uniformly random vocabulary tokens.
* ``repeat``: copies of the request's own blocks (looped filler).
* ``splice_same``: a run of blocks from another request in the same category.
* ``splice_other``: a run of blocks from another request in another category.
* ``adaptive``: on-topic filler that a model generated: a run of blocks from another model's
  solution of the same problem (coherent, relevant, and not a copy of this trace).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from bench.audit.traces import Trace, tokenizer

ATTACKS = ("overbill", "random", "repeat", "splice_same", "splice_other", "adaptive")
INFLATIONS = (0.10, 0.25, 0.50, 1.00, 3.00)


@dataclass(frozen=True, slots=True)
class Inflated:
    blocks: list[str]  # committed block texts, in order
    padded: frozenset[int]  # indices of the added blocks
    billed_extra: int  # tokens billed beyond the committed ones (overbill only)


class Provider:
    def __init__(self, traces: list[Trace], block_size: int, seed: int = 0) -> None:
        self.traces = traces
        self.block_size = block_size
        self.rng = random.Random(seed)
        self._vocab = tokenizer().get_vocab_size()

    def _run(self, donor: list[str], n: int) -> list[str]:
        if len(donor) >= n:
            start = self.rng.randrange(len(donor) - n + 1)
            return donor[start : start + n]
        return [donor[i % len(donor)] for i in range(n)]

    def _donor(self, trace: Trace, *, same_category: bool) -> Trace:
        pool = [
            t
            for t in self.traces
            if t.problem != trace.problem and (t.category == trace.category) == same_category
        ]
        return self.rng.choice(pool)

    def padding(self, attack: str, trace: Trace, blocks: list[str], n: int) -> list[str]:
        if attack == "random":
            decode = tokenizer().decode
            ids = [[self.rng.randrange(1000, self._vocab) for _ in range(self.block_size)]]
            ids += [
                [self.rng.randrange(1000, self._vocab) for _ in range(self.block_size)]
                for _ in range(n - 1)
            ]
            return [" " + decode(row) for row in ids]
        if attack == "repeat":
            return [self.rng.choice(blocks) for _ in range(n)]
        if attack in ("splice_same", "splice_other"):
            donor = self._donor(trace, same_category=attack == "splice_same")
            return self._run(donor.block_texts(self.block_size), n)
        if attack == "adaptive":
            others = [
                t for t in self.traces if t.problem == trace.problem and t.model != trace.model
            ]
            donor = self.rng.choice(others) if others else self._donor(trace, same_category=True)
            return self._run(donor.block_texts(self.block_size), n)
        raise ValueError(f"unknown attack {attack!r}")

    def inflate(self, attack: str, trace: Trace, f: float) -> Inflated:
        blocks = trace.block_texts(self.block_size)
        n = max(1, math.ceil(f * len(blocks)))
        if attack == "overbill":
            return Inflated(blocks, frozenset(), n * self.block_size)
        pad = self.padding(attack, trace, blocks, n)
        if attack in ("random", "repeat"):
            # Spread out, as a generator looping or babbling between real steps would.
            order = sorted(self.rng.sample(range(len(blocks) + n), n))
        else:
            # A contiguous run, as text pasted at one place.
            at = self.rng.randrange(len(blocks) + 1)
            order = list(range(at, at + n))
        out: list[str] = []
        padded: set[int] = set()
        honest, filler = iter(blocks), iter(pad)
        for i in range(len(blocks) + n):
            if order and order[0] == i:
                order.pop(0)
                out.append(next(filler))
                padded.add(i)
            else:
                out.append(next(honest))
        return Inflated(out, frozenset(padded), 0)
