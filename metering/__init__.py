"""Metering: counts, hidden-token commitments, signed hash-chained ledger, export, verification.

The public API is re-exported here; ``tests/metering/test_metering_api.py`` checks ``__all__``.
Storage backends (``metering.ledger_sqlite``, ``metering.ledger_postgres``) are imported by
``open_ledger`` on demand, so importing ``metering`` pulls in no database driver.
"""

from fairgate.metering.audit import (
    AuditResponse,
    Challenge,
    OpenedLeaf,
    answer_challenge,
    parse_receipt,
    sample_positions,
)
from fairgate.metering.audit_check import (
    AuditReport,
    Finding,
    Reason,
    Severity,
    TokenPolicy,
    verify_audit,
)
from fairgate.metering.canonical import canonical_json
from fairgate.metering.commitment import (
    Commitment,
    HiddenCommitter,
    LeafOpening,
    Opening,
    verify_leaf_opening,
)
from fairgate.metering.errors import (
    CanonicalJSONError,
    CommitmentError,
    DuplicateRequestError,
    InvalidProofError,
    LedgerCorruptError,
    LedgerError,
    MeteringError,
    PricingError,
    ProofError,
    RootMismatchError,
    SigningKeyError,
)
from fairgate.metering.export import ExportFormat, cloudevent, export_ledger, write_records
from fairgate.metering.ledger import Ledger, open_ledger
from fairgate.metering.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    compute_root,
    hash_children,
    hash_leaf,
    inclusion_proof,
    root_from_inclusion_proof,
    verify_inclusion,
)
from fairgate.metering.pricing import Cost, ModelPrices, PriceTable
from fairgate.metering.record import (
    GENESIS_HASH,
    LedgerEntry,
    Receipt,
    Status,
    record_hash,
    verify_signature,
)
from fairgate.metering.signing import (
    Keyring,
    PublicKey,
    SigningKey,
    jwks_of,
    load_signing_key,
    parse_public_keys,
)
from fairgate.metering.timestamps import format_rfc3339, parse_time
from fairgate.metering.usage import Usage
from fairgate.metering.verify import Failure, Gap, Problem, VerifyReport, verify_export

__all__ = [
    "EMPTY_ROOT",
    "GENESIS_HASH",
    "AuditReport",
    "AuditResponse",
    "CanonicalJSONError",
    "Challenge",
    "Commitment",
    "CommitmentError",
    "Cost",
    "DuplicateRequestError",
    "ExportFormat",
    "Failure",
    "Finding",
    "Gap",
    "HiddenCommitter",
    "InvalidProofError",
    "Keyring",
    "LeafOpening",
    "Ledger",
    "LedgerCorruptError",
    "LedgerEntry",
    "LedgerError",
    "MerkleTree",
    "MeteringError",
    "ModelPrices",
    "OpenedLeaf",
    "Opening",
    "PriceTable",
    "PricingError",
    "Problem",
    "ProofError",
    "PublicKey",
    "Reason",
    "Receipt",
    "RootMismatchError",
    "Severity",
    "SigningKey",
    "SigningKeyError",
    "Status",
    "TokenPolicy",
    "Usage",
    "VerifyReport",
    "answer_challenge",
    "canonical_json",
    "cloudevent",
    "compute_root",
    "export_ledger",
    "format_rfc3339",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "jwks_of",
    "load_signing_key",
    "open_ledger",
    "parse_public_keys",
    "parse_receipt",
    "parse_time",
    "record_hash",
    "root_from_inclusion_proof",
    "sample_positions",
    "verify_audit",
    "verify_export",
    "verify_inclusion",
    "verify_leaf_opening",
    "verify_signature",
    "write_records",
]
