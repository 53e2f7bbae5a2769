"""Offline verification of a ledger export: signatures, hash links, sequence continuity.

``verify_export(lines, public_keys)`` is pure: it reads JSONL lines (signed records, or
CloudEvents whose ``data`` is a signed record) and returns a :class:`VerifyReport`; nothing is
raised for a bad export. It checks, per line, the record's shape, that its ``key_id`` is one of
the given public keys (ids are derived from the keys, never taken on trust), its Ed25519
signature, and that the commitment covers exactly the billed reasoning tokens; then, per chain,
in file order:

* seq strictly increases, and no seq or request id appears twice;
* each record whose predecessor (seq - 1) is in the file links to it: ``prev_hash`` equals the
  predecessor's record hash; seq 0 carries the genesis hash (64 zeros);
* with ``allow_gaps=False`` (the default, for a full export) a chain starts at seq 0 and has no
  missing seq. A filtered export (``--tenant``, ``--since``) is not contiguous: with
  ``allow_gaps=True`` every present record is still checked, every missing range is reported as
  a :class:`Gap`, and links are checked wherever two consecutive seqs are both present.

What no export can show: records removed from the end of a chain (a truncated file whose last
line is whole). A client holding a receipt (seq and signature) can check its own record is
there; ``VerifyReport.chains`` says which seq range was verified.

Each failure names its line (1-based), seq and :class:`Problem`; ``first`` is the earliest line.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fairgate.metering.canonical import canonical_json
from fairgate.metering.errors import CanonicalJSONError
from fairgate.metering.merkle import EMPTY_ROOT
from fairgate.metering.record import GENESIS_HASH, RECORD_VERSION, verify_signature
from fairgate.metering.signing import PublicKey

_HEX64 = re.compile(r"[0-9a-f]{64}")
_EMPTY_ROOT_HEX = EMPTY_ROOT.hex()
_MAX_FAILURES = 100


class Problem(StrEnum):
    MALFORMED = "malformed"  # not JSON, not an object, or a field missing or of the wrong type
    TRUNCATED = "truncated"  # the last line is cut off
    UNKNOWN_KEY = "unknown_key"  # signed by a key that is not among the given public keys
    BAD_SIGNATURE = "bad_signature"  # a field was changed, or the record is forged
    BAD_COMMITMENT = "bad_commitment"  # leaf count differs from billed reasoning tokens
    DUPLICATE = "duplicate"  # a seq or request id seen before
    OUT_OF_ORDER = "out_of_order"  # a seq placed after a higher one (e.g. swapped lines)
    GAP = "gap"  # a seq is missing (e.g. a deleted line)
    BROKEN_LINK = "broken_link"  # prev_hash is not the previous record's hash
    BAD_GENESIS = "bad_genesis"  # seq 0 with a prev_hash other than 64 zeros


@dataclass(frozen=True, slots=True)
class Failure:
    line: int
    problem: Problem
    detail: str
    seq: int | None = None
    chain: str | None = None
    request_id: str | None = None

    def __str__(self) -> str:
        where = f"line {self.line}"
        if self.seq is not None:
            where += f" (chain {self.chain!r}, seq {self.seq}, request {self.request_id!r})"
        return f"{where}: {self.problem}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Gap:
    """Seqs ``after_seq + 1 .. before_seq - 1`` of ``chain`` are not in the file."""

    chain: str
    after_seq: int | None  # None: the chain's first records are missing
    before_seq: int
    line: int  # the line of ``before_seq``

    @property
    def missing(self) -> int:
        return self.before_seq - (-1 if self.after_seq is None else self.after_seq) - 1

    def __str__(self) -> str:
        first = 0 if self.after_seq is None else self.after_seq + 1
        span = f"seq {first}" if self.missing == 1 else f"seqs {first}..{self.before_seq - 1}"
        return f"chain {self.chain!r}: {span} missing (before line {self.line})"


@dataclass(slots=True)
class ChainSummary:
    chain: str
    first_seq: int
    last_seq: int
    records: int
    last_hash: str


@dataclass(slots=True)
class VerifyReport:
    records: int = 0
    failures: list[Failure] = field(default_factory=list)
    gaps: list[Gap] = field(default_factory=list)
    chains: dict[str, ChainSummary] = field(default_factory=dict)
    key_ids: set[str] = field(default_factory=set)
    allow_gaps: bool = False

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first(self) -> Failure | None:
        return self.failures[0] if self.failures else None

    def summary(self) -> str:
        if self.first is not None:
            more = len(self.failures) - 1
            tail = f" ({more} more problem{'s' if more != 1 else ''})" if more else ""
            return f"FAILED at {self.first}{tail}"
        chains = ", ".join(
            f"{c.chain!r} seq {c.first_seq}..{c.last_seq}" for c in self.chains.values()
        )
        keys = ", ".join(sorted(self.key_ids)) or "none"
        text = f"OK: {self.records} records verified ({chains or 'no chains'}); keys: {keys}"
        if self.gaps:
            text += f"; {len(self.gaps)} gap(s), allowed: " + "; ".join(map(str, self.gaps[:5]))
            if len(self.gaps) > 5:
                text += "; ..."
        return text


@dataclass(frozen=True, slots=True)
class _Entry:
    line: int
    chain: str
    seq: int
    request_id: str
    prev_hash: str
    record_hash: str


def _shape_problem(record: Any) -> str | None:
    """Why ``record`` is not a well-formed signed record, or ``None``."""
    if not isinstance(record, dict):
        return "not a JSON object"
    expected: dict[str, type | tuple[type, ...]] = {
        "v": int, "chain": str, "seq": int, "prev_hash": str, "request_id": str, "tenant": str,
        "model": str, "replica": (str, type(None)), "status": str, "status_code": int,
        "started_at": str, "finished_at": str, "usage": dict, "commitment": dict,
        "cost": (dict, type(None)), "key_id": str, "signature": str,
    }  # fmt: skip
    for name, kind in expected.items():
        if name not in record:
            return f"missing field {name!r}"
        value = record[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            return f"field {name!r} has the wrong type"
    if record["v"] != RECORD_VERSION:
        return f"unsupported record version {record['v']}"
    if record["seq"] < 0 or not _HEX64.fullmatch(record["prev_hash"]):
        return "seq or prev_hash out of range"
    commitment = record["commitment"]
    if not isinstance(commitment.get("leaves"), int) or not isinstance(commitment.get("root"), str):
        return "commitment needs integer 'leaves' and hex 'root'"
    return None


def _commitment_problem(record: dict[str, Any]) -> str | None:
    commitment, usage = record["commitment"], record["usage"]
    details = usage.get("completion_tokens_details") or {}
    reasoning = details.get("reasoning_tokens", 0) if isinstance(details, dict) else None
    if commitment["leaves"] != reasoning:
        return (
            f"commitment has {commitment['leaves']} leaves but usage bills {reasoning} "
            "reasoning tokens"
        )
    if commitment["leaves"] == 0 and commitment["root"] != _EMPTY_ROOT_HEX:
        return "zero leaves must have the empty-tree root"
    if not _HEX64.fullmatch(commitment["root"]):
        return "commitment root is not 64 hex digits"
    return None


def _unwrap(document: Any) -> Any:
    """A CloudEvent's ``data``, or the document itself."""
    if isinstance(document, dict) and "specversion" in document and "data" in document:
        return document["data"]
    return document


class _Verifier:
    def __init__(self, keys: Mapping[str, PublicKey], allow_gaps: bool) -> None:
        self.keys = keys
        self.report = VerifyReport(allow_gaps=allow_gaps)
        self.entries: list[_Entry] = []
        self.invalid: dict[str, set[int]] = {}  # seqs of records that failed line checks

    def fail(self, failure: Failure) -> None:
        self.report.failures.append(failure)

    def check_line(self, number: int, text: str, is_last: bool, terminated: bool) -> None:
        try:
            record = _unwrap(json.loads(text))
        except json.JSONDecodeError as exc:
            if is_last and not terminated:
                self.fail(Failure(number, Problem.TRUNCATED, f"last line is cut off ({exc})"))
            else:
                self.fail(Failure(number, Problem.MALFORMED, f"not JSON: {exc}"))
            return
        shape = _shape_problem(record)
        if shape is not None:
            self.fail(Failure(number, Problem.MALFORMED, shape))
            return
        chain, seq, request_id = record["chain"], record["seq"], record["request_id"]

        def fail(problem: Problem, detail: str) -> None:
            self.fail(Failure(number, problem, detail, seq, chain, request_id))
            self.invalid.setdefault(chain, set()).add(seq)

        key = self.keys.get(record["key_id"])
        if key is None:
            given = ", ".join(sorted(self.keys)) or "none"
            fail(
                Problem.UNKNOWN_KEY,
                f"signed by key {record['key_id']!r}, which is not among the given public "
                f"keys ({given})",
            )
            return
        try:
            valid = verify_signature(record, key)
        except CanonicalJSONError as exc:
            fail(Problem.MALFORMED, f"no canonical form: {exc}")
            return
        if not valid:
            fail(
                Problem.BAD_SIGNATURE,
                f"signature does not verify with key {key.key_id} (a field was changed or "
                "the record is forged)",
            )
            return
        problem = _commitment_problem(record)
        if problem is not None:
            fail(Problem.BAD_COMMITMENT, problem)
            return
        self.report.key_ids.add(key.key_id)
        record_hash = hashlib.sha256(canonical_json(record)).hexdigest()
        self.entries.append(
            _Entry(number, chain, seq, request_id, record["prev_hash"], record_hash)
        )

    def check_chains(self) -> None:
        present: dict[str, set[int]] = {}
        for entry in self.entries:
            present.setdefault(entry.chain, set()).add(entry.seq)
        last: dict[str, _Entry] = {}
        request_lines: dict[str, int] = {}
        seen: dict[str, set[int]] = {}
        for entry in self.entries:

            def fail(problem: Problem, detail: str, entry: _Entry = entry) -> None:
                self.fail(
                    Failure(entry.line, problem, detail, entry.seq, entry.chain, entry.request_id)
                )

            chain_seen = seen.setdefault(entry.chain, set())
            if entry.seq in chain_seen:
                fail(Problem.DUPLICATE, f"seq {entry.seq} appears twice in chain {entry.chain!r}")
                continue
            if entry.request_id in request_lines:
                fail(
                    Problem.DUPLICATE,
                    f"request id already on line {request_lines[entry.request_id]}",
                )
                continue
            previous = last.get(entry.chain)
            if previous is not None and entry.seq < previous.seq:
                fail(
                    Problem.OUT_OF_ORDER,
                    f"seq {entry.seq} comes after seq {previous.seq} (line {previous.line})",
                )
                continue
            chain_seen.add(entry.seq)
            request_lines[entry.request_id] = entry.line
            after = None if previous is None else previous.seq
            expected = 0 if after is None else after + 1
            if entry.seq > expected:
                self.gap(entry, after, present[entry.chain], fail)
            if entry.seq == 0 and entry.prev_hash != GENESIS_HASH:
                fail(Problem.BAD_GENESIS, "seq 0 must have prev_hash of 64 zeros")
            elif (
                previous is not None
                and entry.seq == previous.seq + 1
                and entry.prev_hash != previous.record_hash
            ):
                fail(
                    Problem.BROKEN_LINK,
                    f"prev_hash {entry.prev_hash[:16]}… is not the hash of seq {previous.seq} "
                    f"(line {previous.line}), {previous.record_hash[:16]}…",
                )
            last[entry.chain] = entry
            summary = self.report.chains.get(entry.chain)
            if summary is None:
                self.report.chains[entry.chain] = ChainSummary(
                    entry.chain, entry.seq, entry.seq, 1, entry.record_hash
                )
            else:
                summary.last_seq, summary.last_hash = entry.seq, entry.record_hash
                summary.records += 1
        self.report.records = sum(c.records for c in self.report.chains.values())

    def gap(
        self,
        entry: _Entry,
        after: int | None,
        present: set[int],
        fail: Callable[[Problem, str], None],
    ) -> None:
        first_missing = 0 if after is None else after + 1
        missing = range(first_missing, entry.seq)
        later = next((seq for seq in missing if seq in present), None)
        if later is not None:
            fail(
                Problem.OUT_OF_ORDER,
                f"seq {entry.seq} comes before seq {later}, which is further down the file",
            )
            return
        invalid = self.invalid.get(entry.chain, set())
        if all(seq in invalid for seq in missing):
            return  # those records are in the file and already reported as bad
        gap = Gap(entry.chain, after, entry.seq, entry.line)
        self.report.gaps.append(gap)
        if not self.report.allow_gaps:
            fail(
                Problem.GAP,
                f"{gap}; a full export has every seq (use allow-gaps for a filtered export)",
            )


def verify_export(
    lines: Iterable[str],
    public_keys: Iterable[PublicKey] | Mapping[str, PublicKey],
    *,
    allow_gaps: bool = False,
) -> VerifyReport:
    """Verify a JSONL export read line by line (lines keep their ``\\n``, as a file yields them).

    Whitespace-only lines are ignored. See the module docstring for every check.
    """
    keys = public_keys.values() if isinstance(public_keys, Mapping) else public_keys
    verifier = _Verifier({key.key_id: key for key in keys}, allow_gaps)
    pending: tuple[int, str] | None = None  # one line of lookahead, to know the last line
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        if pending is not None:
            verifier.check_line(*pending, is_last=False, terminated=pending[1].endswith("\n"))
        pending = (number, text)
    if pending is not None:
        verifier.check_line(*pending, is_last=True, terminated=pending[1].endswith("\n"))
    verifier.check_chains()
    failures = verifier.report.failures
    failures.sort(key=lambda failure: failure.line)
    del failures[_MAX_FAILURES:]
    return verifier.report
