"""The auditor's HTTP client: challenge a gateway over a receipt and check its answer.

:func:`run_audit` runs one challenge and the protocol checks; :func:`audit_request` the whole
audit of :mod:`metering.auditor` (sequential rounds, the semantic checks, the length flag) with
:func:`default_checks`, the shipped model and limits. Both raise :class:`AuditClientError` when the
audit cannot run at all. ``fairgate audit`` (:mod:`gateway.cli_audit`) is their command line.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx

from fairgate.gateway.cli_audit_inputs import AuditClientError
from fairgate.metering import auditor
from fairgate.metering.audit import DEFAULT_SAMPLES, REVEAL_EMBEDDINGS, Challenge
from fairgate.metering.audit_check import AuditReport, Retokenize, TokenPolicy, verify_audit
from fairgate.metering.auditor import DEFAULT_CONFIDENCE, DEFAULT_MAX_BLOCKS, Checks, Verdict
from fairgate.metering.errors import SigningKeyError
from fairgate.metering.record import Receipt
from fairgate.metering.signing import PublicKey, parse_public_keys

NONCE_BYTES = 32
KEYS_PATH = "/.well-known/fairgate-keys"
CHALLENGE_PATH = "/v1/audit/challenge"


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or response.reason_phrase


def run_audit(
    base_url: str,
    audit_key: str,
    receipt: Receipt,
    *,
    samples: int = DEFAULT_SAMPLES,
    nonce: bytes | None = None,
    retokenize: Retokenize | None = None,
    token_policy: TokenPolicy = TokenPolicy.EXACT,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> AuditReport:
    """Fetch the gateway's keys, challenge it over ``receipt`` and verify the answer.

    ``nonce`` defaults to fresh ``os.urandom`` bytes; pass one only to replay a challenge.
    Raises :class:`AuditClientError` when the audit cannot run at all.
    """
    challenge = Challenge(receipt.request_id, nonce or os.urandom(NONCE_BYTES), samples)
    headers = {"Authorization": f"Bearer {audit_key}"}
    try:
        with httpx.Client(base_url=base_url, timeout=timeout, transport=transport) as client:
            keys_response = client.get(KEYS_PATH)
            if keys_response.status_code != 200:
                raise AuditClientError(
                    f"{KEYS_PATH}: HTTP {keys_response.status_code}: "
                    f"{_error_message(keys_response)}"
                )
            answer = client.post(CHALLENGE_PATH, json=challenge.to_dict(), headers=headers)
    except httpx.HTTPError as exc:
        raise AuditClientError(f"cannot reach {base_url}: {exc}") from None
    try:
        keys = parse_public_keys(keys_response.text)
    except SigningKeyError as exc:
        raise AuditClientError(f"{KEYS_PATH}: {exc}") from None
    if answer.status_code == 404:
        return AuditReport.unanswered(
            receipt, f"the gateway answered 404: {_error_message(answer)}"
        )
    if answer.status_code != 200:
        raise AuditClientError(
            f"{CHALLENGE_PATH}: HTTP {answer.status_code}: {_error_message(answer)}"
        )
    try:
        body: Any = answer.json()
    except ValueError:
        body = None  # verify_audit reports it as malformed
    return verify_audit(
        receipt, challenge, body, keys, retokenize=retokenize, token_policy=token_policy
    )


def _send(client: httpx.Client, headers: dict[str, str]) -> Any:
    def send(challenge: Challenge) -> Any:
        for _ in range(3):
            answer = client.post(CHALLENGE_PATH, json=challenge.to_dict(), headers=headers)
            if answer.status_code != 429:
                break
            time.sleep(min(5.0, float(answer.headers.get("retry-after", "1"))))
        if answer.status_code == 404:
            raise _Unanswered(f"the gateway answered 404: {_error_message(answer)}")
        if answer.status_code != 200:
            raise AuditClientError(
                f"{CHALLENGE_PATH}: HTTP {answer.status_code}: {_error_message(answer)}"
            )
        try:
            return answer.json()
        except ValueError:
            return None  # verify_audit reports it as malformed

    return send


class _Unanswered(Exception):
    pass


def audit_request(
    base_url: str,
    audit_key: str,
    receipt: Receipt,
    prompt: str,
    answer: str,
    *,
    samples: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    max_blocks: int | None = DEFAULT_MAX_BLOCKS,
    reveal: str = REVEAL_EMBEDDINGS,
    retokenize: Retokenize | None = None,
    token_policy: TokenPolicy = TokenPolicy.EXACT,
    checks: Checks | None = None,
    timeout: float = 30.0,
    transport: httpx.BaseTransport | None = None,
) -> Verdict:
    """The whole audit (:func:`metering.auditor.audit`) against a gateway over HTTP.

    ``checks`` defaults to the shipped embedder, thresholds and length model. Raises
    :class:`AuditClientError` when the audit cannot run at all.
    """
    if checks is None:
        checks = default_checks()
    headers = {"Authorization": f"Bearer {audit_key}"}
    try:
        with httpx.Client(base_url=base_url, timeout=timeout, transport=transport) as client:
            keys = _public_keys(client)
            send = _send(client, headers)
            try:
                return auditor.audit(
                    send,
                    receipt,
                    keys,
                    prompt,
                    answer,
                    checks,
                    samples=samples,
                    confidence=confidence,
                    max_blocks=max_blocks,
                    retokenize=retokenize,
                    token_policy=token_policy,
                    nonce=lambda: os.urandom(NONCE_BYTES),
                    reveal=reveal,
                )
            except _Unanswered as exc:
                return auditor.unanswered(receipt, str(exc))
    except httpx.HTTPError as exc:
        raise AuditClientError(f"cannot reach {base_url}: {exc}") from None


def _public_keys(client: httpx.Client) -> list[PublicKey]:
    response = client.get(KEYS_PATH)
    if response.status_code != 200:
        raise AuditClientError(
            f"{KEYS_PATH}: HTTP {response.status_code}: {_error_message(response)}"
        )
    try:
        return parse_public_keys(response.text)
    except SigningKeyError as exc:
        raise AuditClientError(f"{KEYS_PATH}: {exc}") from None


def default_checks(cutoffs: bool = False) -> Checks:
    """The shipped embedder, thresholds, block classifier and length model; raises
    ``AuditClientError``. ``cutoffs=True``: the fixed cut-offs beside the learned checks
    (more false positives; ``bench/RESULTS.md``)."""
    try:
        from fairgate.metering import block_classifier
        from fairgate.metering.calibration import LENGTH, THRESHOLDS
        from fairgate.metering.embedding import EmbeddingUnavailable, load_embedder
    except ImportError as exc:
        raise AuditClientError(f"{exc}: pip install 'fairgate[audit]'") from None
    try:
        embedder = load_embedder()
    except EmbeddingUnavailable as exc:
        raise AuditClientError(str(exc)) from None
    return Checks(
        embed=embedder.embed,
        thresholds=THRESHOLDS,
        length=LENGTH,
        classifier=block_classifier.load(),
        cutoffs=cutoffs,
    )
