"""What the embedding fingerprints cost the gateway, and what one whole audit costs the auditor.

    python -m bench.audit.cost

Gateway: CPU time of :meth:`HiddenCommitter.fingerprint` (embed every block, one thread) and of
the commitment, per request of 128, 512 and 2048 hidden tokens. Auditor: CPU time of one
:func:`metering.auditor.audit` at k=64, then up to 64 blocks (the CLI default), over the real
protocol (signed record, Merkle proofs, embeddings-only openings) on honest CHAMP traces, after
the model is loaded.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

from bench.audit.traces import load_traces, split
from fairgate.metering import block_classifier
from fairgate.metering.audit import answer_challenge
from fairgate.metering.auditor import DEFAULT_MAX_BLOCKS, Checks, audit
from fairgate.metering.calibration import LENGTH, THRESHOLDS
from fairgate.metering.commitment import HiddenCommitter
from fairgate.metering.embedding import MiniLMEmbedder
from fairgate.metering.record import (
    GENESIS_HASH,
    LedgerEntry,
    Receipt,
    sign_record,
    unsigned_record,
)
from fairgate.metering.signing import SigningKey
from fairgate.metering.usage import Usage

BLOCK = 16


def committer_for(ids: list[int], texts: list[str]) -> HiddenCommitter:
    c = HiddenCommitter(BLOCK)
    for i, text in enumerate(texts):
        c.add(ids[i * BLOCK : (i + 1) * BLOCK], text)
    return c


def signed(committer: HiddenCommitter, rid: str, key: SigningKey) -> dict[str, Any]:
    commitment = committer.commit()
    entry = LedgerEntry(
        request_id=rid,
        tenant="t",
        model="m",
        replica="r",
        status="ok",
        status_code=200,
        started_at=0.0,
        finished_at=1.0,
        usage=Usage(
            prompt_tokens=10,
            completion_tokens=commitment.leaves + 5,
            reasoning_tokens=commitment.leaves,
        ),
        commitment=commitment,
        opening=committer.opening(),
    )
    body = unsigned_record(entry, chain="default", seq=1, prev_hash=GENESIS_HASH, key_id=key.key_id)
    return sign_record(body, key)


def main() -> int:
    t = time.perf_counter()
    embedder = MiniLMEmbedder(threads=1)
    print(f"model load: {time.perf_counter() - t:.2f} s wall")
    traces = [tr for tr in split(load_traces(settings=("0-Shot",)))[1] if len(tr.token_ids) > 600]
    long_text = traces[0]
    print("| hidden tokens | blocks | fingerprint CPU ms | commit CPU ms |")
    print("|---|---|---|---|")
    for n in (128, 512, 2048):
        ids = [(long_text.token_ids * 8)[i] for i in range(n)]
        texts = [f" step {i} " + long_text.block_texts(BLOCK)[i % 30] for i in range(n // BLOCK)]
        c = committer_for(ids, texts)
        a = time.process_time()
        c.fingerprint(embedder.model_id, embedder.embed_quantized)
        b = time.process_time()
        c.commit()
        e = time.process_time()
        print(f"| {n} | {n // BLOCK} | {1000 * (b - a):.0f} | {1000 * (e - b):.1f} |")
    key = SigningKey.generate()
    checks = Checks(
        embed=embedder.embed,
        thresholds=THRESHOLDS,
        length=LENGTH,
        classifier=block_classifier.load(),
        cutoffs=False,
    )  # what `fairgate audit` runs by default (--checks learned)
    cpu = []
    verdicts = []
    for i, tr in enumerate(traces[:20]):
        texts = tr.block_texts(BLOCK)
        c = committer_for(list(tr.token_ids), texts)
        c.fingerprint(embedder.model_id, embedder.embed_quantized)
        record = signed(c, f"req_{i}", key)
        opening = c.opening()
        receipt = Receipt.from_record(record)
        a = time.process_time()
        verdict = audit(
            lambda ch, rec=record, op=opening: answer_challenge(rec, op, ch).to_dict(),
            receipt,
            [key.public_key],
            tr.prompt,
            tr.answer,
            checks,
            samples=64,
            max_blocks=DEFAULT_MAX_BLOCKS,
            nonce=lambda: os.urandom(32),
        )
        cpu.append(time.process_time() - a)
        verdicts.append(verdict.state)
        if not verdict.honest:
            print(f"  flagged honest trace {tr.problem}/{tr.model}: {verdict.findings[0]}")
    tokens = statistics.mean(len(t.token_ids) for t in traces[:20])
    print(
        f"\none whole audit, k=64 then up to {DEFAULT_MAX_BLOCKS} blocks, {len(cpu)} honest "
        f"traces of {tokens:.0f} "
        f"tokens (gateway answer included): CPU median {1000 * statistics.median(cpu):.0f} ms, "
        f"max {1000 * max(cpu):.0f} ms; verdicts {sorted(set(verdicts))} "
        f"({verdicts.count('honest')}/{len(verdicts)} honest)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
