"""Errors raised by ``metering``.

Every error derives from :class:`MeteringError`, so callers can catch the package as a whole::

    MeteringError
    ├── ProofError                  an inclusion proof does not check out
    │   ├── InvalidProofError       malformed: index out of range, proof too long or too short
    │   └── RootMismatchError       well-formed, but it leads to a different root
    ├── CommitmentError             an opened leaf does not match its block or commitment
    ├── CanonicalJSONError          a value has no canonical JSON form (floats, NaN, non-str keys)
    ├── SigningKeyError             a key cannot be loaded, parsed or stored
    ├── PricingError                a price table entry is invalid (names the key)
    └── LedgerError                 the ledger cannot append or read
        ├── DuplicateRequestError   a request id already has its record (exactly one per request)
        └── LedgerCorruptError      stored data does not match its own hashes

Verification of an export does not raise: it returns a ``VerifyReport`` naming the first bad
record, because a bad export is an expected outcome, not a programming error.
"""

from __future__ import annotations


class MeteringError(Exception):
    """Base class of every error raised by ``metering``."""


class ProofError(MeteringError):
    """An inclusion proof does not check out."""


class InvalidProofError(ProofError):
    """The proof is malformed for the given index and tree size."""


class RootMismatchError(ProofError):
    """The proof is well-formed but leads to another root."""

    def __init__(self, expected: bytes, computed: bytes) -> None:
        super().__init__(f"root mismatch: expected {expected.hex()}, computed {computed.hex()}")
        self.expected = expected
        self.computed = computed


class CommitmentError(MeteringError):
    """An opened hidden-token leaf does not match its block or its commitment."""


class CanonicalJSONError(MeteringError, TypeError):
    """A value has no canonical JSON form."""


class SigningKeyError(MeteringError):
    """A signing or public key cannot be loaded, parsed or stored."""


class PricingError(MeteringError, ValueError):
    """A price table entry is invalid; the message names the offending key."""


class LedgerError(MeteringError):
    """The ledger cannot append or read."""


class DuplicateRequestError(LedgerError):
    """The request id already has a ledger record; every request gets exactly one."""


class LedgerCorruptError(LedgerError):
    """Stored data does not match its own hashes."""
