"""Records: signed over canonical JSON, hashed whole, receipts, entry validation."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import pytest

from fairgate.metering.base64url import b64url_decode
from fairgate.metering.canonical import canonical_json
from fairgate.metering.commitment import Commitment
from fairgate.metering.record import (
    GENESIS_HASH,
    LedgerEntry,
    Receipt,
    Status,
    record_hash,
    sign_record,
    signing_payload,
    unsigned_record,
    verify_signature,
)
from fairgate.metering.signing import SigningKey
from fairgate.metering.usage import Usage


def build(entry: LedgerEntry, key: SigningKey, seq: int = 0) -> dict[str, Any]:
    body = unsigned_record(entry, chain="c", seq=seq, prev_hash=GENESIS_HASH, key_id=key.key_id)
    return sign_record(body, key)


def test_record_fields(helpers: Any, signing_key: SigningKey) -> None:
    record = build(helpers.make_entry(3, reasoning=5), signing_key)
    assert set(record) == {
        "v", "chain", "seq", "prev_hash", "request_id", "tenant", "model", "replica", "status",
        "status_code", "started_at", "finished_at", "usage", "commitment", "cost", "key_id",
        "signature",
    }  # fmt: skip
    assert record["started_at"] == "2025-06-15T15:06:42.500000Z"
    assert record["finished_at"] == "2025-06-15T15:06:43.000000Z"
    assert record["usage"] == {
        "prompt_tokens": 20,
        "completion_tokens": 15,
        "total_tokens": 35,
        "prompt_tokens_details": {"cached_tokens": 5},
        "completion_tokens_details": {"reasoning_tokens": 5},
    }
    assert record["commitment"]["leaves"] == 5
    assert record["prev_hash"] == "0" * 64


def test_signature_covers_every_other_field(helpers: Any, signing_key: SigningKey) -> None:
    record = build(helpers.make_entry(1), signing_key)
    signature = b64url_decode(record["signature"])
    payload = canonical_json({k: v for k, v in record.items() if k != "signature"})
    assert signing_payload(record) == payload
    assert signing_key.public_key.verify(signature, payload)
    assert verify_signature(record, signing_key.public_key)
    for field, value in [
        ("tenant", "evil"),
        ("seq", 1),
        ("usage", {}),
        ("cost", {"x": "1"}),
        ("key_id", "0" * 16),
        ("commitment", Commitment(root="0" * 64, leaves=0).to_dict()),
    ]:
        assert not verify_signature({**record, field: value}, signing_key.public_key), field
    assert not verify_signature({**record, "signature": "!!"}, signing_key.public_key)
    assert not verify_signature(record, SigningKey.generate().public_key)


def test_record_hash_is_sha256_of_canonical_signed_record(
    helpers: Any, signing_key: SigningKey
) -> None:
    record = build(helpers.make_entry(1), signing_key)
    assert record_hash(record) == hashlib.sha256(canonical_json(record)).hexdigest()
    assert record_hash(record) != record_hash({**record, "signature": "x"})


def test_receipt(helpers: Any, signing_key: SigningKey) -> None:
    record = build(helpers.make_entry(2, reasoning=3), signing_key, seq=7)
    receipt = Receipt.from_record(record)
    assert receipt.to_dict() == {
        "request_id": "req-2",
        "seq": 7,
        "leaves": 3,
        "root": record["commitment"]["root"],
        "key_id": signing_key.key_id,
        "signature": record["signature"],
    }


def test_sign_record_refuses_a_foreign_key_id(helpers: Any, signing_key: SigningKey) -> None:
    body = unsigned_record(helpers.make_entry(1), chain="c", seq=0, prev_hash=GENESIS_HASH,
                           key_id="0" * 16)  # fmt: skip
    with pytest.raises(ValueError):
        sign_record(body, signing_key)


@pytest.mark.parametrize(
    "change",
    [
        {"request_id": ""},
        {"tenant": ""},
        {"status": "Not OK"},
        {"status_code": 99},
        {"status_code": True},
        {"finished_at": float("nan")},
        {"usage": Usage(prompt_tokens=1, cached_tokens=2)},
        {"usage": Usage(completion_tokens=1, reasoning_tokens=2)},
        {"usage": Usage(prompt_tokens=-1)},
        {"usage": Usage(completion_tokens=5, reasoning_tokens=4)},  # 4 billed, 0 committed
        {"replica": 3},
    ],
)
def test_entry_validation(helpers: Any, change: dict[str, Any]) -> None:
    entry = helpers.make_entry(1)
    with pytest.raises(ValueError):
        replace(entry, **change)


def test_status_accepts_known_and_new_words(helpers: Any) -> None:
    assert replace(helpers.make_entry(1), status=Status.REPLICA_DIED).status == "replica_died"
    assert replace(helpers.make_entry(1), status="model_not_found").status == "model_not_found"
