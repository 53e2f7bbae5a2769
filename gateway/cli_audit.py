"""``fairgate audit``: challenge a gateway over a receipt's hidden tokens and verify its answer.

    fairgate audit --url http://HOST:PORT --audit-key KEY --receipt FILE_OR_JSON
                   [--prompt FILE --answer FILE] [--samples K | --confidence P] [--blocks B]
                   [--checks learned|both]
                   [--reveal embeddings|full] [--tokenizer PATH]
                   [--token-mismatch fail|report] [--json]

With ``--prompt`` and ``--answer`` (the prompt as text or a JSON messages array, the visible
answer as text) it runs the whole audit of :mod:`metering.auditor`: sequential rounds of
challenges, the protocol checks, the semantic checks on the opened blocks' embeddings and the
length flag, and prints a verdict with its evidence. Without them it runs one challenge and the
protocol checks only (``--samples`` positions, default 8). ``--confidence P`` (default 0.99) sets
the sample size from the bound in :func:`metering.auditor.samples_for`; ``--blocks B`` (default
64) keeps opening past those positions until ``B`` blocks, or all, are open. ``--checks`` runs
the learned block checks alone (``learned``, the default: under 1% false positives in
``bench/RESULTS.md``) or with the fixed cut-offs beside them (``both``).

The receipt is a file or inline JSON: the receipt object itself, or a whole completion response
that carries one under ``receipt``. The key may come from ``$FAIRGATE_AUDIT_KEY`` instead of
``--audit-key`` (keeps it out of the process list). It needs no configuration: an auditor runs it
from anywhere. It fetches the gateway's public keys (``/.well-known/fairgate-keys``), sends a fresh
32-byte nonce from ``os.urandom`` and checks the answer with
:func:`metering.audit_check.verify_audit` (:mod:`gateway.audit_client`; the input files are read by
:mod:`gateway.cli_audit_inputs`).

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
from typing import Any

from fairgate.gateway.audit_client import (
    CHALLENGE_PATH,
    KEYS_PATH,
    NONCE_BYTES,
    audit_request,
    default_checks,
    run_audit,
)
from fairgate.gateway.cli_audit_inputs import (
    AuditClientError,
    load_prompt,
    load_receipt,
    load_retokenizer,
    read_text,
)
from fairgate.metering.audit import (
    DEFAULT_SAMPLES,
    MAX_SAMPLES,
    REVEAL_EMBEDDINGS,
    REVEAL_FULL,
)
from fairgate.metering.audit_check import TokenPolicy
from fairgate.metering.auditor import DEFAULT_CONFIDENCE, DEFAULT_MAX_BLOCKS

__all__ = [
    "CHALLENGE_PATH",
    "KEYS_PATH",
    "NONCE_BYTES",
    "AuditClientError",
    "audit_request",
    "default_checks",
    "load_prompt",
    "load_receipt",
    "load_retokenizer",
    "register",
    "run_audit",
]

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_USAGE = 2
KEY_ENV = "FAIRGATE_AUDIT_KEY"
CHECKS_BOTH = "both"
CHECKS_LEARNED = "learned"


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
        choices=[CHECKS_LEARNED, CHECKS_BOTH],
        default=CHECKS_LEARNED,
        help="with --prompt/--answer: the learned block checks alone (learned, default), or "
        "with the fixed cut-offs beside them (both: more false positives; see bench/RESULTS.md)",
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
        answer = read_text(args.answer, "answer")
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
