"""The audit endpoint: the gateway's side of the challenge in :mod:`metering.audit`.

    POST /v1/audit/challenge   {"request_id": "...", "nonce": "<hex, 16..64 bytes>",
                                "samples": 1..256 (default 8),
                                "reveal": "embeddings" (default) | "full"}
      200  {"object": "fairgate.audit.response", "request_id", "nonce", "samples",
            "block_size", "record": <the signed ledger record>, "openings": [...] (protocol 1),
            "blocks": [...] (protocol 2: embeddings only unless full)}
      401  no key, or a wrong one           403  a tenant API key; "full" for a tenant not in
                                                 audit.full_openings
      400  a malformed body                 404  no such record, or its hidden tokens were
                                                 committed but their opening is not in the store
      429  more than audit.challenges_per_minute for this key (with Retry-After)

A record with zero hidden tokens is answered (200) with nothing to open, so an auditor can still
check its signature and that it bills no reasoning. Auditors present ``audit_key`` from the
configuration, or the admin key (see :mod:`gateway.admin`), as a Bearer token; both are compared
in constant time, and tenant keys never work: a tenant must not choose what gets opened.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import time
from collections import deque
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator

from fairgate.gateway.admin import admin_key
from fairgate.gateway.api import json_body
from fairgate.gateway.auth import bearer_token
from fairgate.gateway.errors import (
    Forbidden,
    RateLimited,
    RecordNotFound,
    Unauthorized,
    invalid_request,
)
from fairgate.gateway.runtime import Runtime
from fairgate.metering.audit import (
    DEFAULT_SAMPLES,
    MAX_NONCE_BYTES,
    MAX_SAMPLES,
    MIN_NONCE_BYTES,
    Challenge,
    RevealRefused,
    answer_challenge,
)
from fairgate.metering.commitment import Opening
from fairgate.metering.ledger import Ledger

router = APIRouter(prefix="/v1/audit")


class ChallengeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=256)
    nonce: str = Field(min_length=2 * MIN_NONCE_BYTES, max_length=2 * MAX_NONCE_BYTES)
    samples: Annotated[StrictInt, Field(ge=1, le=MAX_SAMPLES)] = DEFAULT_SAMPLES
    reveal: Literal["embeddings", "full"] = "embeddings"

    @field_validator("nonce")
    @classmethod
    def _hex(cls, value: str) -> str:
        try:
            bytes.fromhex(value)
        except ValueError:
            raise ValueError("must be hex digits, two per byte") from None
        return value


class ChallengeLimiter:
    """At most ``per_minute`` challenges per key in any 60 s: answering hashes whole trees."""

    def __init__(self, per_minute: int, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._seen: dict[str, deque[float]] = {}

    def admit(self, key: str) -> None:
        now = self.clock()
        name = hashlib.sha256(key.encode()).hexdigest()  # no key kept in memory as-is
        times = self._seen.setdefault(name, deque())
        while times and times[0] <= now - 60.0:
            times.popleft()
        if len(times) >= self.per_minute:
            wait = max(1, math.ceil(times[0] + 60.0 - now))
            raise RateLimited(
                f"Too many audit challenges: at most {self.per_minute} a minute per key.",
                headers={"Retry-After": str(wait)},
            )
        times.append(now)


def _limiter(request: Request, runtime: Runtime) -> ChallengeLimiter:
    limiter: ChallengeLimiter | None = getattr(request.app.state, "audit_limiter", None)
    if limiter is None:
        limiter = ChallengeLimiter(runtime.config.audit.challenges_per_minute)
        request.app.state.audit_limiter = limiter
    return limiter


def require_auditor(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    token = bearer_token(request.headers.get("authorization"))
    if not token:
        raise Unauthorized(
            "This endpoint needs the audit key. Send it as 'Authorization: Bearer <key>'."
        )
    config = runtime.config
    accepted = [key for key in (config.audit_key, admin_key(config)) if key]
    # Compare with every key (no early exit), so timing does not tell which one matched.
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in accepted]
    if not any(matches):
        if runtime.keyring.lookup(token) is not None:
            raise Forbidden("A tenant API key cannot use the audit endpoints.")
        raise Unauthorized("Incorrect audit key provided.")
    return runtime


def _parse(data: dict[str, Any]) -> Challenge:
    try:
        body = ChallengeBody.model_validate(data)
    except ValidationError as error:
        raise invalid_request(error) from None
    return Challenge(body.request_id, bytes.fromhex(body.nonce), body.samples, body.reveal)


def _lookup(ledger: Ledger, request_id: str) -> tuple[dict[str, Any] | None, Opening | None]:
    record = ledger.get(request_id)
    if record is None or not record["commitment"]["leaves"]:
        return record, None
    return record, ledger.hidden(request_id)


@router.post("/challenge")
async def challenge(request: Request) -> dict[str, Any]:
    runtime = require_auditor(request)
    _limiter(request, runtime).admit(bearer_token(request.headers.get("authorization")) or "")
    challenge = _parse(await json_body(request))
    ledger = runtime.recorder.ledger
    record, opening = await asyncio.to_thread(_lookup, ledger, challenge.request_id)
    if record is None:
        raise RecordNotFound(
            f"No ledger record for request '{challenge.request_id}'.", param="request_id"
        )
    if record["commitment"]["leaves"] and opening is None:
        raise RecordNotFound(
            f"Request '{challenge.request_id}' committed hidden tokens, but their opening is not "
            "in the audit store.",
            param="request_id",
            code="opening_not_found",
        )
    allow_full = record.get("tenant") in runtime.config.audit.full_openings
    # Rebuilding the tree hashes every hidden token: off the event loop, like the ledger reads.
    try:
        answer = await asyncio.to_thread(
            answer_challenge, record, opening, challenge, allow_full=allow_full
        )
    except RevealRefused as exc:
        raise Forbidden(f"{exc}.", param="reveal") from None
    runtime.metrics.audits.inc()
    return answer.to_dict()
