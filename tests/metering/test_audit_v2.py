"""Protocol 2 (embedding fingerprints) and the semantic audit, with the real embedding model."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import pytest

from fairgate.metering import protocol
from fairgate.metering.audit import AuditResponse, Challenge, answer_challenge
from fairgate.metering.audit_check import Reason, verify_audit
from fairgate.metering.auditor import Checks, audit, detection_bound, samples_for
from fairgate.metering.commitment import HiddenCommitter, Opening
from fairgate.metering.estimator import fit
from fairgate.metering.record import (
    GENESIS_HASH,
    LedgerEntry,
    Receipt,
    sign_record,
    unsigned_record,
)
from fairgate.metering.semantic import SpliceIndex
from fairgate.metering.signing import SigningKey
from fairgate.metering.usage import Usage

pytest.importorskip("onnxruntime")
from fairgate.metering.calibration import LENGTH, THRESHOLDS
from fairgate.metering.embedding import MODEL_ID, load_embedder

KEY = SigningKey.generate()
BLOCK = 16
PROMPT = "How many positive divisors does 360 have? Show your work."
ANSWER = "360 has 24 positive divisors."
REASONING = [
    "To count the divisors of 360 we first find its prime factorization.",
    " 360 divided by 2 is 180, and 180 divided by 2 is 90.",
    " 90 divided by 2 is 45, so the factor 2 appears three times.",
    " 45 divided by 3 is 15 and 15 divided by 3 is 5, so 3 appears twice.",
    " The last factor is the prime 5, which appears once.",
    " So 360 = 2^3 * 3^2 * 5^1 as a product of prime powers.",
    " A divisor of 360 picks an exponent of 2 from 0 to 3.",
    " It picks an exponent of 3 from 0 to 2 and an exponent of 5 from 0 to 1.",
    " These choices are independent, so we multiply the number of options.",
    " There are 4 choices for the power of 2 and 3 choices for the power of 3.",
    " There are 2 choices for the power of 5.",
    " The number of divisors is therefore (3+1)(2+1)(1+1).",
    " That is 4 times 3 times 2, which equals 24.",
    " As a check, the divisors 1, 2, 3, 4, 5, 6, 8, 9 and 10 all divide 360.",
    " Continuing the list up to 360 itself gives 24 divisors in total.",
    " Hence 360 has exactly 24 positive divisors.",
]
OTHER_DOMAIN = [
    " Photosynthesis takes place in the chloroplasts of plant leaves.",
    " Light energy splits water molecules and releases oxygen gas.",
    " The Calvin cycle fixes carbon dioxide into sugars using ATP.",
    " Chlorophyll absorbs red and blue light and reflects green light.",
    " Stomata open to let carbon dioxide diffuse into the leaf.",
    " Glucose made in the leaf is stored as starch in the roots.",
    " The French Revolution began in 1789 with the storming of the Bastille.",
    " Napoleon later crowned himself emperor in Notre-Dame cathedral.",
]


@pytest.fixture(scope="module")
def embedder() -> Any:
    return load_embedder()


@pytest.fixture(scope="module")
def checks(embedder: Any) -> Checks:
    return Checks(embed=embedder.embed, thresholds=THRESHOLDS, length=LENGTH)


def committed(blocks: list[str], embedder: Any, salt: bytes = bytes(32)) -> HiddenCommitter:
    """One ``add`` of 16 token ids per block text: every block is exactly one text."""
    committer = HiddenCommitter(block_size=BLOCK, salt=salt)
    for i, text in enumerate(blocks):
        committer.add([1000 + (7 * i + j) % 30000 for j in range(BLOCK)], text)
    committer.fingerprint(embedder.model_id, embedder.embed_quantized)
    return committer


def signed_record(
    opening: Opening, request_id: str = "req_v2", key: SigningKey = KEY, extra: int = 0
) -> dict[str, Any]:
    commitment = opening.commitment()
    entry = LedgerEntry(
        request_id=request_id,
        tenant="acme",
        model="m",
        replica="r0",
        status="ok",
        status_code=200,
        started_at=1_700_000_000.0,
        finished_at=1_700_000_001.0,
        usage=Usage(
            prompt_tokens=5,
            completion_tokens=opening.leaves + 3,
            reasoning_tokens=opening.leaves,
        ),
        commitment=commitment,
        opening=opening,
    )
    body = unsigned_record(entry, chain="default", seq=1, prev_hash=GENESIS_HASH, key_id=key.key_id)
    # ``extra``: a dishonest gateway bills more than it commits (LedgerEntry itself refuses).
    body["usage"]["completion_tokens_details"]["reasoning_tokens"] += extra
    return sign_record(body, key)


def run(blocks: list[str], embedder: Any, checks: Checks, samples: int = 64, extra: int = 0) -> Any:
    committer = committed(blocks, embedder)
    opening = committer.opening()
    record = signed_record(opening, extra=extra)
    rng = random.Random(1)
    nonces = iter([rng.randbytes(32) for _ in range(64)])
    return audit(
        lambda ch: answer_challenge(record, opening, ch).to_dict(),
        Receipt.from_record(record),
        [KEY.public_key],
        PROMPT,
        ANSWER,
        checks,
        samples=samples,
        nonce=lambda: next(nonces),
    )


# -- the protocol -------------------------------------------------------------------------------


def test_v2_commitment_names_its_protocol_and_model(embedder: Any) -> None:
    opening = committed(REASONING, embedder).opening()
    commitment = opening.commitment()
    assert commitment.to_dict()["protocol"] == 2 and commitment.embedding == MODEL_ID
    assert commitment.to_dict()["block_size"] == BLOCK
    assert Opening.from_dict(json.loads(json.dumps(opening.to_dict()))) == opening
    v1 = HiddenCommitter(block_size=BLOCK, salt=bytes(32))
    v1.add([1, 2], "ab")
    assert "protocol" not in v1.commit().to_dict()  # a protocol-1 record is what it always was


def test_an_embeddings_only_opening_reveals_no_token_text(embedder: Any) -> None:
    opening = committed(REASONING, embedder).opening()
    record = signed_record(opening)
    answer = answer_challenge(record, opening, Challenge("req_v2", bytes(16), 64))
    opened = [b.to_dict() for b in answer.blocks]
    assert len(opened) == 64
    # Nothing but hashes, the embedding's bytes (hex) and small integers: no text, no token ids.
    for block in opened:
        assert set(block) == {
            "leaf", "position", "block_start", "count", "salt", "content", "embedding", "proof"
        }  # fmt: skip
        for name in ("leaf", "salt", "content", "embedding", *block["proof"]):
            value = block.get(name, name)
            assert all(c in "0123456789abcdef" for c in value)
        assert block["count"] == BLOCK and block["block_start"] % BLOCK == 0
    # The content commitment is keyed: a guess of the text, with the revealed salt, misses.
    first = answer.blocks[0].opening
    guess = protocol.content_commitment(first.salt, 0, opening.token_ids[:BLOCK], REASONING[0])
    assert guess != first.content


def test_an_honest_v2_answer_verifies_and_a_full_one_checks_the_text(embedder: Any) -> None:
    opening = committed(REASONING, embedder).opening()
    record = signed_record(opening)
    receipt = Receipt.from_record(record)
    challenge = Challenge("req_v2", bytes(16), 12)
    report = verify_audit(
        receipt, challenge, answer_challenge(record, opening, challenge).to_dict(), [KEY.public_key]
    )
    assert report.ok and report.protocol == 2, report.findings
    assert all(b.embedding is not None and b.text is None for b in report.blocks)
    full = Challenge("req_v2", bytes(16), 12, "full")
    with pytest.raises(ValueError, match="consented"):
        answer_challenge(record, opening, full)
    answer = answer_challenge(record, opening, full, allow_full=True)
    ok = verify_audit(receipt, full, answer, [KEY.public_key])
    assert ok.ok and all(b.text in REASONING for b in ok.blocks)
    data = answer.to_dict()
    data["blocks"][0]["text"] = " 360 has 25 divisors."
    bad = verify_audit(receipt, full, data, [KEY.public_key])
    assert Reason.CONTENT_MISMATCH in {f.reason for f in bad.findings}


def _answer(embedder: Any) -> tuple[dict[str, Any], Receipt, Challenge, dict[str, Any]]:
    opening = committed(REASONING, embedder).opening()
    record = signed_record(opening)
    challenge = Challenge("req_v2", bytes(16), 8)
    return (
        record,
        Receipt.from_record(record),
        challenge,
        answer_challenge(record, opening, challenge).to_dict(),
    )


def test_tampering_with_a_v2_answer_is_caught(embedder: Any) -> None:
    _, receipt, challenge, answer = _answer(embedder)

    def reasons(
        data: dict[str, Any], rec: Receipt = receipt, ch: Challenge = challenge
    ) -> set[Reason]:
        return {f.reason for f in verify_audit(rec, ch, data, [KEY.public_key]).findings}

    embedding = json.loads(json.dumps(answer))
    first = embedding["blocks"][0]
    first["embedding"] = ("7f" * 4) + first["embedding"][8:]  # an on-topic vector swapped in
    assert Reason.BLOCK_MISMATCH in reasons(embedding)
    proof = json.loads(json.dumps(answer))
    proof["blocks"][0]["proof"][0] = "00" * 32
    assert Reason.BAD_PROOF in reasons(proof)
    wrong_root = replace(receipt, root="11" * 32)
    assert {Reason.RECEIPT_MISMATCH, Reason.BAD_PROOF} <= reasons(answer, wrong_root)
    replayed = Challenge("req_v2", bytes(range(16)), 8)  # a fresh nonce, the old answer
    assert {Reason.MALFORMED, Reason.WRONG_POSITIONS} <= reasons(answer, receipt, replayed)
    other = SigningKey.generate()
    assert Reason.UNKNOWN_KEY in {
        f.reason for f in verify_audit(receipt, challenge, answer, [other.public_key]).findings
    }
    future = json.loads(json.dumps(answer))
    future["record"]["commitment"]["protocol"] = 3
    report = verify_audit(receipt, challenge, future, [KEY.public_key])
    assert report.unverifiable and Reason.UNKNOWN_PROTOCOL in {f.reason for f in report.findings}
    assert AuditResponse.from_dict(answer).blocks  # the untouched answer parses


# -- the semantic audit -------------------------------------------------------------------------


def test_an_honest_request_passes_the_whole_audit(embedder: Any, checks: Checks) -> None:
    verdict = run(REASONING, embedder, checks)
    assert verdict.honest, [str(f) for f in verdict.findings]
    assert verdict.blocks_opened == len(REASONING) and verdict.rounds < 8  # stopped: all open


def test_billing_more_than_committed_is_caught(embedder: Any, checks: Checks) -> None:
    verdict = run(REASONING, embedder, checks, extra=40)
    assert not verdict.honest
    assert Reason.COUNT_MISMATCH in {f.reason for f in verdict.findings}


def test_random_token_padding_is_caught(embedder: Any, checks: Checks) -> None:
    from tokenizers import Tokenizer

    from fairgate.metering.embedding import _locate

    tokenizer = Tokenizer.from_file(str(_locate()[1]))
    rng = random.Random(3)
    vocab = tokenizer.get_vocab_size()
    noise = [
        " " + tokenizer.decode([rng.randrange(1000, vocab) for _ in range(BLOCK)]) for _ in range(8)
    ]
    padded = REASONING[:8] + noise[:4] + REASONING[8:] + noise[4:]  # 50% inflation
    verdict = run(padded, embedder, checks)
    assert Reason.IRRELEVANT in {f.reason for f in verdict.findings}, verdict.to_dict()


def test_repeated_blocks_are_caught(embedder: Any, checks: Checks) -> None:
    looped = REASONING + REASONING[4:12]
    verdict = run(looped, embedder, checks)
    assert Reason.DUPLICATE in {f.reason for f in verdict.findings}, verdict.to_dict()


def test_reasoning_spliced_from_another_domain_is_caught(embedder: Any, checks: Checks) -> None:
    spliced = REASONING[:8] + OTHER_DOMAIN + REASONING[8:]
    verdict = run(spliced, embedder, checks)
    reasons = {f.reason for f in verdict.findings}
    assert reasons & {Reason.IRRELEVANT, Reason.SPLICED}, verdict.to_dict()


def test_blocks_seen_in_another_request_are_splices(embedder: Any) -> None:
    index = SpliceIndex()
    vectors = embedder.embed(REASONING[:4])
    index.add("req_a", vectors)
    assert index.check("req_a", [0, 1], vectors[:2]) == []
    found = index.check("req_b", [5], vectors[2:3])
    assert [f.reason for f in found] == [Reason.SPLICED] and "req_a" in found[0].detail


def test_adaptive_filler_far_beyond_the_predicted_length_is_flagged() -> None:
    # PALACE-style: on-topic filler escapes the block checks; the count escapes the range.
    rng = random.Random(5)
    honest = []
    for _ in range(200):
        prompt = "x" * rng.randrange(100, 600)
        answer = "y" * rng.randrange(20, 200)
        honest.append((prompt, answer, int(3 * len(answer) * rng.uniform(0.7, 1.4))))
    model = fit(honest, alpha=0.005)
    prompt, answer, tokens = honest[0]
    assert model.check(tokens, prompt, answer) is None
    flag = model.check(4 * tokens, prompt, answer)
    assert flag is not None and flag.reason is Reason.LENGTH_OUTLIER
    assert sum(model.check(n, p, a) is not None for p, a, n in honest) <= 2


def test_sample_size_follows_the_bound() -> None:
    assert samples_for(0.99, 0.10) == 49
    assert detection_bound(49, 0.10) >= 0.99 > detection_bound(48, 0.10)
    assert samples_for(0.95, 1.0) == 5


def test_streaming_fingerprints_equal_the_batch_ones(embedder: Any) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from fairgate.metering.fingerprints import StreamingCommitter

    pool = ThreadPoolExecutor(1)
    streaming = StreamingCommitter(4, embedder.model_id, embedder.embed_quantized, pool.submit)
    batch = HiddenCommitter(block_size=4, salt=streaming.salt)
    words = " ".join(REASONING).split()
    for i, word in enumerate(words):
        for c in (streaming, batch):
            c.add([100 + i], " " + word)
            if i % 9 == 4:
                c.add([], "!")  # token-less text: joins the block of the token before it
    streaming.fingerprint(embedder.model_id, embedder.embed_quantized)
    batch.fingerprint(embedder.model_id, embedder.embed_quantized)
    assert streaming.opening() == batch.opening() and streaming.commit() == batch.commit()
    assert len(streaming._early) >= len(words) // 4 - 2  # most blocks were embedded early
    pool.shutdown()


def test_a_full_embedding_queue_refuses_instead_of_queueing(embedder: Any) -> None:
    from fairgate.metering.fingerprints import EmbeddingQueue, StreamingCommitter

    queue = EmbeddingQueue(max_backlog=2)
    assert queue.admit(10)  # an empty queue takes any request
    assert not queue.admit(1) and queue.refused == 1
    committer = StreamingCommitter(4, embedder.model_id, embedder.embed_quantized, queue.submit)
    for i in range(40):
        committer.add([i], f" w{i}")
    assert committer._early == {} and committer.pending_blocks() == 10  # nothing was queued
    queue.done(10)
    assert queue.admit(committer.pending_blocks())
    queue.shutdown()
