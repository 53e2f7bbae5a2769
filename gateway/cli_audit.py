"""``fairgate audit``: challenge a gateway over a receipt's hidden tokens and verify its answer.

    fairgate audit --url http://HOST:PORT --audit-key KEY --receipt FILE_OR_JSON
                   [--prompt FILE --answer FILE] [--samples K | --confidence P] [--blocks B]
                   [--checks both|learned]
                   [--reveal embeddings|full] [--tokenizer PATH]
                   [--token-mismatch fail|report] [--json]

With ``--prompt`` and ``--answer`` (the prompt as text or a JSON messages array, the visible
answer as text) it runs the whole audit of :mod:`metering.auditor`: sequential rounds of
challenges, the protocol checks, the semantic checks on the opened blocks' embeddings and the
length flag, and prints a verdict with its evidence. Without them it runs one challenge and the
protocol checks only (``--samples`` positions, default 8). ``--confidence P`` (default 0.99) sets
the sample size from the bound in :func:`metering.auditor.samples_for`; ``--blocks B`` (default
64) keeps opening past those positions until ``B`` blocks, or all, are open. ``--checks learned``
runs the learned block checks without the fixed cut-offs (fewer false positives).

The receipt is a file or inline JSON: the receipt object itself, or a whole completion response
that carries one under ``receipt``. The key may come from ``$FAIRGATE_AUDIT_KEY`` instead of
``--audit-key`` (keeps it out of the process list). It needs no configuration: an auditor runs it
from anywhere. It fetches the gateway's public keys (``/.well-known/fairgate-keys``), sends a fresh
32-byte nonce from ``os.urandom`` and checks the answer with
:func:`metering.audit_check.verify_audit`.

Exit codes: 0 honest (the audit passed); 1 inflated or findings, including a gateway that answers
404 for a receipt (it signed a record it cannot back); 2 unverifiable: usage errors, an
unreachable gateway, a refused key, a protocol this auditor does not know, or no embedding model
(``pip install 'fairgate[audit]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from fairgate.metering import auditor
from fairgate.metering.audit import (
    DEFAULT_SAMPLES,
    MAX_SAMPLES,
    REVEAL_EMBEDDINGS,
    REVEAL_FULL,
    Challenge,
    parse_receipt,
)
from fairgate.metering.audit_check import (
    AuditReport,
    Retokenize,
    TokenPolicy,
    verify_audit,
)
from fairgate.metering.auditor import DEFAULT_CONFIDENCE, DEFAULT_MAX_BLOCKS, Checks, Verdict
from fairgate.metering.errors import SigningKeyError
from fairgate.metering.record import Receipt
from fairgate.metering.signing import PublicKey, parse_public_keys

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
KEY_ENV = "FAIRGATE_AUDIT_KEY"
NONCE_BYTES = 32
KEYS_PATH = "/.well-known/fairgate-keys"
CHALLENGE_PATH = "/v1/audit/challenge"
CHECKS_BOTH = "both"
CHECKS_LEARNED = "learned"


class AuditClientError(Exception):
    """The audit could not run: bad input, an unreachable gateway, a refused key (exit 2)."""


def load_receipt(source: str) -> Receipt:
    """A receipt from a file path or inline JSON (a receipt, or a response holding one)."""
    text = source
    if not source.lstrip().startswith("{"):
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            raise AuditClientError(f"cannot read receipt {source}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AuditClientError(f"receipt is not JSON: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("receipt"), dict):
        data = data["receipt"]
    try:
        return parse_receipt(data)
    except ValueError as exc:
        raise AuditClientError(f"not a receipt: {exc}") from None


def load_retokenizer(path: str) -> Retokenize:
    """``text -> token ids`` (no special tokens) from a ``tokenizer.json`` or a model folder."""
    try:
        if Path(path).is_file():
            from tokenizers import Tokenizer

            tokenizer = Tokenizer.from_file(path)
            return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
        from fairgate.metering.tokens import HFTokenizer

        return HFTokenizer(path).encode
    except Exception as exc:  # tokenizers and transformers raise many kinds
        raise AuditClientError(f"cannot load tokenizer {path}: {exc}") from None


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


def load_prompt(source: str) -> str:
    """The prompt's text from a file: plain text, or a JSON messages array (contents joined)."""
    text = _read(source, "prompt")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(data, list):
        parts = []
        for message in data:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, list):  # content parts: keep the text ones
                content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
            if not isinstance(content, str):
                raise AuditClientError("prompt: a messages array needs a 'content' per message")
            parts.append(content)
        return "\n\n".join(parts)
    return text


def _read(source: str, what: str) -> str:
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise AuditClientError(f"cannot read {what} {source}: {exc.strerror}") from None


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


def default_checks(cutoffs: bool = True) -> Checks:
    """The shipped embedder, thresholds, block classifier and length model; raises
    ``AuditClientError``. ``cutoffs=False``: the learned checks without the fixed cut-offs
    (fewer false positives, blind to prose from another domain; ``bench/RESULTS.md``)."""
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


def _blocks(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 0 <= value <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be 0..{MAX_SAMPLES}")
    return value


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1, e.g. 0.99")
    return value


def _samples(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= MAX_SAMPLES:
        raise argparse.ArgumentTypeError(f"must be 1..{MAX_SAMPLES}")
    return value


def register(subparsers: Any) -> None:
    """Add ``audit`` to an argparse subparsers object; it sets ``func(args) -> int``."""
    parser = subparsers.add_parser(
        "audit",
        help="challenge a gateway over a receipt's hidden tokens and verify the answer",
        description="Send a fresh random nonce to the gateway's audit endpoint; it opens the "
        "hidden tokens the nonce samples (always including the last) with inclusion proofs and "
        "their blocks. Checks the signed record, the count, the proofs and the blocks. "
        "Exit 0 ok, 1 findings, 2 usage or connection errors.",
    )
    parser.add_argument("--url", required=True, help="the gateway, e.g. http://127.0.0.1:8000")
    parser.add_argument(
        "--audit-key",
        default=os.environ.get(KEY_ENV),
        help=f"the gateway's audit (or admin) key (default: ${KEY_ENV})",
    )
    parser.add_argument(
        "--receipt",
        required=True,
        metavar="FILE_OR_JSON",
        help="the receipt: a file, or inline JSON; a whole completion response works too",
    )
    parser.add_argument("--prompt", metavar="FILE", help="the prompt: text or a messages array")
    parser.add_argument("--answer", metavar="FILE", help="the visible answer, as text")
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--samples",
        type=_samples,
        default=None,
        help="positions to open, all rounds together (default: from --confidence; "
        f"{DEFAULT_SAMPLES} without --prompt)",
    )
    size.add_argument(
        "--confidence",
        type=_confidence,
        default=DEFAULT_CONFIDENCE,
        help="chance to sample a padded position at 10%% inflation (default 0.99: 49 samples)",
    )
    parser.add_argument(
        "--blocks",
        type=_blocks,
        default=DEFAULT_MAX_BLOCKS,
        help="with --prompt/--answer: past the positions, keep opening until this many blocks "
        f"(or all) are open (default {DEFAULT_MAX_BLOCKS}; 0: positions only)",
    )
    parser.add_argument(
        "--checks",
        choices=[CHECKS_BOTH, CHECKS_LEARNED],
        default=CHECKS_BOTH,
        help="with --prompt/--answer: the learned block checks and the fixed cut-offs (both, "
        "default), or the learned ones alone (fewer false positives; see bench/RESULTS.md)",
    )
    parser.add_argument(
        "--reveal",
        choices=[REVEAL_EMBEDDINGS, REVEAL_FULL],
        default=REVEAL_EMBEDDINGS,
        help="open blocks by embedding only (default), or with ids and text (the tenant must "
        "have consented)",
    )
    parser.add_argument(
        "--tokenizer",
        metavar="PATH",
        help="a tokenizer.json or model folder: check each opened block re-tokenizes to its ids",
    )
    parser.add_argument(
        "--token-mismatch",
        choices=[p.value for p in TokenPolicy],
        default=TokenPolicy.EXACT.value,
        help="a re-tokenization mismatch fails the audit (exact, default) or is a warning (report)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=_audit)


def _audit(args: argparse.Namespace) -> int:
    if not args.audit_key:
        print(f"fairgate audit: give --audit-key or set ${KEY_ENV}", file=sys.stderr)
        return EXIT_USAGE
    if (args.prompt is None) != (args.answer is None):
        print("fairgate audit: give --prompt and --answer together", file=sys.stderr)
        return EXIT_USAGE
    if args.prompt is not None:
        return _full_audit(args)
    try:
        receipt = load_receipt(args.receipt)
        retokenize = load_retokenizer(args.tokenizer) if args.tokenizer else None
        report = run_audit(
            args.url.rstrip("/"),
            args.audit_key,
            receipt,
            samples=args.samples or DEFAULT_SAMPLES,
            retokenize=retokenize,
            token_policy=TokenPolicy(args.token_mismatch),
        )
    except AuditClientError as exc:
        print(f"fairgate audit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        for finding in report.findings:
            print(f"  {finding}")
    if report.unverifiable:
        return EXIT_USAGE
    return EXIT_OK if report.ok else EXIT_FINDINGS


def _full_audit(args: argparse.Namespace) -> int:
    try:
        receipt = load_receipt(args.receipt)
        prompt = load_prompt(args.prompt)
        answer = _read(args.answer, "answer")
        retokenize = load_retokenizer(args.tokenizer) if args.tokenizer else None
        verdict = audit_request(
            args.url.rstrip("/"),
            args.audit_key,
            receipt,
            prompt,
            answer,
            samples=args.samples,
            confidence=args.confidence,
            max_blocks=args.blocks or None,
            reveal=args.reveal,
            checks=default_checks(cutoffs=args.checks == CHECKS_BOTH),
            retokenize=retokenize,
            token_policy=TokenPolicy(args.token_mismatch),
        )
    except AuditClientError as exc:
        print(f"fairgate audit: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(verdict.to_dict(), indent=2))
    else:
        print(verdict.summary())
        if verdict.statistics is not None:
            print(f"  statistics: {json.dumps(verdict.statistics.to_dict())}")
        for finding in verdict.findings:
            print(f"  {finding}")
    if verdict.unverifiable:
        return EXIT_USAGE
    return EXIT_OK if verdict.honest else EXIT_FINDINGS
