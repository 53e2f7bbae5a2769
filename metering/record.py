"""Ledger records: one signed, hash-chained JSON object per request.

A record (schema version ``v`` = 1), shown with its canonical key order::

    {"chain": "default",                       which chain (one per gateway instance)
     "commitment": {"alg": "rfc6962-sha256", "leaves": 3, "root": "<64 hex>"},
     "cost": {"cached_prompt": "0.000…", "completion": …, "currency": "USD", "prompt": …,
              "reasoning": …, "total": …} | null,             see metering.pricing
     "finished_at": "2025-01-31T12:00:01.250000Z",             RFC 3339 UTC, microseconds
     "key_id": "<16 hex>", "model": "…", "prev_hash": "<64 hex>", "replica": "r0" | null,
     "request_id": "…", "seq": 0, "signature": "<base64url, no padding>",
     "started_at": "…", "status": "ok", "status_code": 200, "tenant": "…",
     "usage": {OpenAI usage: prompt_tokens, completion_tokens, total_tokens,
               prompt_tokens_details.cached_tokens, completion_tokens_details.reasoning_tokens},
     "v": 1}

* ``signature`` is Ed25519 over ``canonical_json(record without "signature")``.
* ``record_hash`` is SHA-256 (hex) of ``canonical_json(record)``, signature included.
* ``prev_hash`` of seq n is the record hash of seq n-1 in the same chain; seq 0 has 64 zeros.
* ``commitment.leaves`` equals ``usage.completion_tokens_details.reasoning_tokens``: every billed
  hidden token is a committed leaf.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fairgate.metering.base64url import b64url, b64url_decode
from fairgate.metering.canonical import canonical_json
from fairgate.metering.commitment import Commitment, Opening
from fairgate.metering.pricing import Cost, check_usage
from fairgate.metering.signing import PublicKey, SigningKey
from fairgate.metering.timestamps import format_rfc3339
from fairgate.metering.usage import Usage

RECORD_VERSION = 1
GENESIS_HASH = "0" * 64


class Status(StrEnum):
    """Well-known ways a request ends. ``LedgerEntry.status`` takes any snake_case word (at most
    64 characters), so the gateway can name a new outcome without a schema change."""

    OK = "ok"
    CLIENT_DISCONNECTED = "client_disconnected"
    UPSTREAM_ERROR = "upstream_error"
    REPLICA_DIED = "replica_died"
    TIMEOUT = "timeout"
    REJECTED = "rejected"
    INVALID_REQUEST = "invalid_request"
    MODEL_NOT_FOUND = "model_not_found"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    ERROR = "error"


_STATUS_WORD = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(slots=True)
class LedgerEntry:
    """What the gateway knows when a request ends; the ledger adds seq, chain and signature.

    ``started_at`` and ``finished_at`` are unix seconds (``time.time()``); records carry them as
    RFC 3339 strings. ``opening`` goes to the audit store, never into the record. ``cost`` may be
    left ``None`` for the ledger to price with its ``PriceTable``.
    """

    request_id: str
    tenant: str
    model: str
    replica: str | None
    status: str
    status_code: int
    started_at: float
    finished_at: float
    usage: Usage
    commitment: Commitment = field(default_factory=Commitment.empty)
    opening: Opening | None = None
    cost: Cost | None = None

    def __post_init__(self) -> None:
        for name in ("request_id", "tenant", "model"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"LedgerEntry.{name} must be a non-empty string, got {value!r}")
        if self.replica is not None and not isinstance(self.replica, str):
            raise ValueError(f"LedgerEntry.replica must be a string or None, got {self.replica!r}")
        if not isinstance(self.status, str) or not _STATUS_WORD.fullmatch(self.status):
            raise ValueError(f"LedgerEntry.status must be a snake_case word, got {self.status!r}")
        if (
            isinstance(self.status_code, bool)
            or not isinstance(self.status_code, int)
            or not 100 <= self.status_code <= 599
        ):
            raise ValueError(
                f"LedgerEntry.status_code must be an HTTP status, got {self.status_code!r}"
            )
        for name in ("started_at", "finished_at"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise ValueError(f"LedgerEntry.{name} must be unix seconds, got {value!r}")
        check_usage(self.usage)
        if self.commitment.leaves != self.usage.reasoning_tokens:
            raise ValueError(
                f"commitment has {self.commitment.leaves} leaves but usage bills "
                f"{self.usage.reasoning_tokens} reasoning tokens"
            )
        if self.opening is not None and self.opening.leaves != self.commitment.leaves:
            raise ValueError(
                f"opening has {self.opening.leaves} tokens, commitment {self.commitment.leaves}"
            )


def unsigned_record(
    entry: LedgerEntry, *, chain: str, seq: int, prev_hash: str, key_id: str
) -> dict[str, Any]:
    """The record of ``entry`` at ``seq`` in ``chain``, every field but the signature."""
    return {
        "v": RECORD_VERSION,
        "chain": chain,
        "seq": seq,
        "prev_hash": prev_hash,
        "request_id": entry.request_id,
        "tenant": entry.tenant,
        "model": entry.model,
        "replica": entry.replica,
        "status": str(entry.status),
        "status_code": entry.status_code,
        "started_at": format_rfc3339(entry.started_at),
        "finished_at": format_rfc3339(entry.finished_at),
        "usage": entry.usage.to_openai(),
        "commitment": entry.commitment.to_dict(),
        "cost": None if entry.cost is None else entry.cost.to_dict(),
        "key_id": key_id,
    }


def signing_payload(record: dict[str, Any]) -> bytes:
    """The bytes the signature covers: canonical JSON of every field except ``signature``."""
    return canonical_json({key: value for key, value in record.items() if key != "signature"})


def sign_record(body: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """``body`` plus its Ed25519 ``signature``; ``body["key_id"]`` must be the key's id."""
    if body.get("key_id") != key.key_id:
        raise ValueError(f"record key_id {body.get('key_id')!r} is not {key.key_id!r}")
    return {**body, "signature": b64url(key.sign(signing_payload(body)))}


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the whole signed record."""
    return hashlib.sha256(canonical_json(record)).hexdigest()


def verify_signature(record: dict[str, Any], public_key: PublicKey) -> bool:
    """True when ``record["signature"]`` is ``public_key``'s signature over the other fields."""
    try:
        signature = b64url_decode(str(record["signature"]))
    except (KeyError, ValueError):
        return False
    return public_key.verify(signature, signing_payload(record))


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the client gets: enough to find its record and check its signature later."""

    request_id: str
    seq: int
    leaves: int
    root: str
    key_id: str
    signature: str

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Receipt:
        return cls(
            request_id=record["request_id"],
            seq=record["seq"],
            leaves=record["commitment"]["leaves"],
            root=record["commitment"]["root"],
            key_id=record["key_id"],
            signature=record["signature"],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "seq": self.seq,
            "leaves": self.leaves,
            "root": self.root,
            "key_id": self.key_id,
            "signature": self.signature,
        }
