"""Offline verification names the first bad record for every kind of tampering."""

from __future__ import annotations

import json
from typing import Any

import pytest

from fairgate.metering.canonical import canonical_json
from fairgate.metering.commitment import Commitment
from fairgate.metering.export import cloudevent
from fairgate.metering.ledger import Ledger
from fairgate.metering.record import sign_record
from fairgate.metering.signing import SigningKey
from fairgate.metering.verify import Problem, verify_export

N = 12


@pytest.fixture
def lines(sqlite_ledger: Ledger, helpers: Any) -> list[str]:
    helpers.fill(sqlite_ledger, N)
    result: list[str] = helpers.export_lines(sqlite_ledger)
    assert len(result) == N
    return result


def first(lines: list[str], key: SigningKey, **options: Any) -> tuple[int, int | None, Problem]:
    report = verify_export(lines, [key.public_key], **options)
    assert not report.ok
    assert report.first is not None
    assert str(report.first) in report.summary()
    return report.first.line, report.first.seq, report.first.problem


def resign(record: dict[str, Any], key: SigningKey) -> str:
    body = {k: v for k, v in record.items() if k != "signature"}
    return canonical_json(sign_record(body, key)).decode() + "\n"


def test_honest_export_verifies(lines: list[str], signing_key: SigningKey) -> None:
    report = verify_export(lines, [signing_key.public_key])
    assert report.ok, report.summary()
    assert report.records == N
    assert report.gaps == []
    assert report.key_ids == {signing_key.key_id}
    chain = report.chains["default"]
    assert (chain.first_seq, chain.last_seq, chain.records) == (0, N - 1, N)
    assert report.summary().startswith("OK: 12 records")


def test_changed_field(lines: list[str], signing_key: SigningKey) -> None:
    record = json.loads(lines[4])
    record["usage"]["completion_tokens"] += 1
    lines[4] = canonical_json(record).decode() + "\n"
    assert first(lines, signing_key) == (5, 4, Problem.BAD_SIGNATURE)


def test_changed_byte_in_signature(lines: list[str], signing_key: SigningKey) -> None:
    record = json.loads(lines[7])
    record["signature"] = ("A" if record["signature"][0] != "A" else "B") + record["signature"][1:]
    lines[7] = json.dumps(record) + "\n"  # any JSON spelling of a record is fine
    assert first(lines, signing_key) == (8, 7, Problem.BAD_SIGNATURE)


def test_deleted_line(lines: list[str], signing_key: SigningKey) -> None:
    del lines[5]
    line, seq, problem = first(lines, signing_key)
    assert (line, seq, problem) == (6, 6, Problem.GAP)
    report = verify_export(lines, [signing_key.public_key])
    assert "seq 5 missing" in str(report.first)


def test_deleted_first_line(lines: list[str], signing_key: SigningKey) -> None:
    assert first(lines[1:], signing_key) == (1, 1, Problem.GAP)


def test_swapped_lines(lines: list[str], signing_key: SigningKey) -> None:
    lines[3], lines[4] = lines[4], lines[3]
    assert first(lines, signing_key) == (4, 4, Problem.OUT_OF_ORDER)


def test_inserted_forged_line(lines: list[str], signing_key: SigningKey) -> None:
    forged = json.loads(lines[2])
    forged.update(request_id="req-forged", seq=3, tenant="acme")
    lines.insert(3, canonical_json(forged).decode() + "\n")
    assert first(lines, signing_key) == (4, 3, Problem.BAD_SIGNATURE)


def test_inserted_line_signed_by_another_key(lines: list[str], signing_key: SigningKey) -> None:
    attacker = SigningKey.generate()
    forged = json.loads(lines[2])
    forged.update(request_id="req-forged", key_id=attacker.key_id)
    lines.insert(3, resign(forged, attacker))
    assert first(lines, signing_key) == (4, 2, Problem.UNKNOWN_KEY)


def test_replayed_line(lines: list[str], signing_key: SigningKey) -> None:
    lines.insert(6, lines[2])
    assert first(lines, signing_key) == (7, 2, Problem.DUPLICATE)


def test_truncated_file(lines: list[str], signing_key: SigningKey) -> None:
    lines[-1] = lines[-1][: len(lines[-1]) // 2]
    assert first(lines, signing_key) == (N, None, Problem.TRUNCATED)


def test_garbage_line_in_the_middle(lines: list[str], signing_key: SigningKey) -> None:
    lines[3] = lines[3][:40] + "\n"
    assert first(lines, signing_key) == (4, None, Problem.MALFORMED)


def test_wrong_public_key(lines: list[str], signing_key: SigningKey) -> None:
    other = SigningKey.generate()
    report = verify_export(lines, [other.public_key])
    assert report.first is not None
    assert (report.first.line, report.first.seq, report.first.problem) == (
        1, 0, Problem.UNKNOWN_KEY,
    )  # fmt: skip
    assert signing_key.key_id in report.first.detail and other.key_id in report.first.detail


def test_key_id_claiming_the_right_key_but_signed_by_another(
    lines: list[str], signing_key: SigningKey
) -> None:
    attacker = SigningKey.generate()
    record = json.loads(lines[0])
    body = {k: v for k, v in record.items() if k != "signature"}
    body["tenant"] = "evil"
    payload = canonical_json(body)
    from fairgate.metering.base64url import b64url

    lines[0] = canonical_json({**body, "signature": b64url(attacker.sign(payload))}).decode()
    lines[0] += "\n"
    assert first(lines, signing_key) == (1, 0, Problem.BAD_SIGNATURE)


def test_broken_link_even_when_signed_by_the_key(lines: list[str], signing_key: SigningKey) -> None:
    # An insider holding the key re-signs a record with a different prev_hash.
    record = json.loads(lines[6])
    record["prev_hash"] = "1" * 64
    lines[6] = resign(record, signing_key)
    assert first(lines, signing_key) == (7, 6, Problem.BROKEN_LINK)


def test_bad_genesis(lines: list[str], signing_key: SigningKey) -> None:
    record = json.loads(lines[0])
    record["prev_hash"] = "1" * 64
    lines[0] = resign(record, signing_key)
    assert first(lines, signing_key)[2] is Problem.BAD_GENESIS


def test_commitment_must_cover_billed_reasoning(lines: list[str], signing_key: SigningKey) -> None:
    record = json.loads(lines[3])  # seq 3 has 3 reasoning tokens
    record["commitment"] = Commitment.empty().to_dict()
    lines[3] = resign(record, signing_key)
    assert first(lines, signing_key) == (4, 3, Problem.BAD_COMMITMENT)


def test_tenant_filtered_export_needs_allow_gaps(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    helpers.fill(sqlite_ledger, N)
    acme = helpers.export_lines(sqlite_ledger, tenant="acme")
    assert len(acme) == N // 2
    assert first(acme, signing_key)[2] is Problem.GAP
    report = verify_export(acme, [signing_key.public_key], allow_gaps=True)
    assert report.ok, report.summary()
    assert [(g.after_seq, g.before_seq) for g in report.gaps] == [
        (seq, seq + 2) for seq in range(0, N - 2, 2)
    ]
    assert "gap" in report.summary()
    # Signatures are still checked with allow_gaps.
    record = json.loads(acme[2])
    record["tenant"] = "globex"
    acme[2] = canonical_json(record).decode() + "\n"
    assert first(acme, signing_key, allow_gaps=True) == (3, 4, Problem.BAD_SIGNATURE)


def test_time_filtered_export_links_where_consecutive(
    sqlite_ledger: Ledger, helpers: Any, signing_key: SigningKey
) -> None:
    helpers.fill(sqlite_ledger, N)
    window = helpers.export_lines(sqlite_ledger, since=helpers.T0 + 4, until=helpers.T0 + 9)
    report = verify_export(window, [signing_key.public_key], allow_gaps=True)
    assert report.ok and report.records == 5
    assert [str(g) for g in report.gaps] == ["chain 'default': seqs 0..3 missing (before line 1)"]
    record = json.loads(window[2])
    record["prev_hash"] = "2" * 64
    window[2] = resign(record, signing_key)
    assert first(window, signing_key, allow_gaps=True) == (3, 6, Problem.BROKEN_LINK)


def test_cloudevents_verify_like_jsonl(lines: list[str], signing_key: SigningKey) -> None:
    events = [canonical_json(cloudevent(json.loads(line))).decode() + "\n" for line in lines]
    assert verify_export(events, [signing_key.public_key]).ok


def test_rotated_keys_in_one_chain(helpers: Any, tmp_path: Any) -> None:
    from fairgate.metering.ledger import open_ledger

    old, new = SigningKey.generate(), SigningKey.generate()
    with open_ledger(None, tmp_path, old) as ledger:
        helpers.fill(ledger, 3)
    with open_ledger(None, tmp_path, new) as ledger:
        helpers.fill(ledger, 3, start=3)
        lines = helpers.export_lines(ledger)
    assert verify_export(lines, [old.public_key, new.public_key]).ok
    assert first(lines, old) == (4, 3, Problem.UNKNOWN_KEY)


def test_blank_lines_are_ignored_and_empty_export_is_ok(
    lines: list[str], signing_key: SigningKey
) -> None:
    assert verify_export([*lines[:3], "\n", *lines[3:], "\n"], [signing_key.public_key]).ok
    empty = verify_export([], [signing_key.public_key])
    assert empty.ok and empty.records == 0
