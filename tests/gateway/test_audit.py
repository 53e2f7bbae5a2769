"""POST /v1/audit/challenge and ``fairgate audit`` against a real gateway on the sim provider.

``gateway`` commits protocol 1 (embeddings off: the receipts of earlier releases, which must stay
verifiable); ``gateway_v2`` commits protocol 2 with the real embedding model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.gateway import cli
from fairgate.gateway.cli_audit import run_audit
from fairgate.metering.audit import (
    Challenge,
    parse_receipt,
    sample_positions,
)
from fairgate.metering.audit_check import (
    Reason,
)
from fairgate.metering.embedding import MODEL_ID
from fairgate.metering.record import Receipt
from fairgate.replicas.sim import REASONING_WORDS
from tests.gateway.conftest import client, one_record
from tests.support.gateway_server import GatewayServer, sim_config

REPO = Path(__file__).resolve().parents[2]
AUDIT_KEY = "audit-secret"
ADMIN_KEY = "admin-secret"  # sim_config's
MESSAGES = [{"role": "user", "content": "what is the answer?"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    # Blocks of 2: the sim's 8 reasoning tokens span 4 blocks, so a sample can miss some.
    config = sim_config(
        tmp_path_factory.mktemp("audit"),
        audit_key=AUDIT_KEY,
        ledger={"block_size": 2},
        audit={"embeddings": "off"},
    )
    with GatewayServer(config) as server:
        yield server


def hidden_receipt(server: GatewayServer, content: str = "what is the answer?") -> dict[str, Any]:
    completion = client(server).chat.completions.create(
        model="sim-hidden", messages=[{"role": "user", "content": content}]
    )
    assert completion.model_extra is not None
    receipt: dict[str, Any] = completion.model_extra["receipt"]
    assert receipt["leaves"] == 8
    return receipt


def challenge(
    server: GatewayServer, body: dict[str, Any], key: str | None = AUDIT_KEY
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(server.base_url + "/v1/audit/challenge", json=body, headers=headers)


def audits(server: GatewayServer) -> float:
    return server.runtime.registry.get_sample_value("fairgate_audits_total") or 0.0


def test_an_honest_request_audits_clean_through_the_python_api(gateway: GatewayServer) -> None:
    receipt = parse_receipt(hidden_receipt(gateway))
    before = audits(gateway)
    report = run_audit(gateway.base_url, AUDIT_KEY, receipt, samples=3)
    assert report.ok and not report.findings, report.findings
    assert report.leaves == 8 and len(report.positions) == 3 and report.positions[-1] == 7
    assert report.verified == report.positions
    assert run_audit(gateway.base_url, ADMIN_KEY, receipt, samples=8).verified == tuple(range(8))
    assert audits(gateway) == before + 2


def test_an_honest_request_audits_clean_through_the_cli(
    gateway: GatewayServer, tmp_path: Path
) -> None:
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(hidden_receipt(gateway)))
    env = {**os.environ, "FAIRGATE_AUDIT_KEY": AUDIT_KEY}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fairgate.gateway.cli",
            "audit",
            "--url",
            gateway.base_url,
            "--receipt",
            str(path),
            "--samples",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is True and report["findings"] == []
    assert len(report["verified"]) == 4 and report["verified"][-1] == 7


def test_the_answer_holds_no_text_of_unsampled_blocks(gateway: GatewayServer) -> None:
    receipt = hidden_receipt(gateway, "show me only what you sample")
    rid = receipt["request_id"]
    opening = gateway.runtime.recorder.ledger.hidden(rid)
    assert opening is not None and len(opening.block_texts) == 4
    # A nonce whose sample is one position in blocks 0..2 plus the last (block 3).
    nonce = next(
        n
        for n in (i.to_bytes(16, "big") for i in range(100))
        if sample_positions(n, rid, 8, 2)[0] < 6
    )
    response = challenge(gateway, Challenge(rid, nonce, 2).to_dict())
    assert response.status_code == 200, response.text
    body = response.json()
    sampled_blocks = {p // 2 for p in sample_positions(nonce, rid, 8, 2)}
    assert len(sampled_blocks) == 2
    assert {o["block_start"] // 2 for o in body["openings"]} == sampled_blocks
    # The record holds no reasoning, so every reasoning word in the answer comes from the two
    # opened blocks (two words each): none from the other two.
    words = sum(response.text.count(word) for word in REASONING_WORDS)
    assert words == 4
    for block in set(range(4)) - sampled_blocks:
        ids = opening.token_ids[2 * block : 2 * block + 2]
        assert json.dumps(list(ids)) not in response.text.replace(" ", "")
    report = run_audit(gateway.base_url, AUDIT_KEY, parse_receipt(receipt), samples=2, nonce=nonce)
    assert report.ok and report.positions == tuple(sorted(sample_positions(nonce, rid, 8, 2)))


def test_a_request_without_hidden_tokens_audits_with_nothing_to_open(
    gateway: GatewayServer,
) -> None:
    # An unknown model still ends in a signed record, billing no reasoning.
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json={"model": "no-such-model", "messages": MESSAGES},
        headers={"Authorization": "Bearer sk-alice"},
    )
    assert response.status_code == 404
    record = one_record(gateway, response.headers["x-request-id"])
    report = run_audit(gateway.base_url, AUDIT_KEY, Receipt.from_record(record))
    assert report.ok and report.leaves == 0 and report.positions == ()


@pytest.mark.parametrize(
    ("key", "status", "kind"),
    [
        (None, 401, "authentication_error"),
        ("wrong-key", 401, "authentication_error"),
        ("sk-alice", 403, "permission_error"),
        ("sk-bob", 403, "permission_error"),
    ],
)
def test_tenant_keys_and_missing_keys_are_refused(
    gateway: GatewayServer, key: str | None, status: int, kind: str
) -> None:
    rid = hidden_receipt(gateway)["request_id"]
    response = challenge(gateway, Challenge(rid, os.urandom(16)).to_dict(), key)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind and set(error) == {"message", "type", "param", "code"}
    assert "openings" not in response.text


def test_an_unknown_request_id_is_an_openai_shaped_404(gateway: GatewayServer) -> None:
    response = challenge(gateway, {"request_id": "req_nope", "nonce": "00" * 16})
    assert response.status_code == 404
    assert response.json() == {
        "error": {
            "message": "No ledger record for request 'req_nope'.",
            "type": "invalid_request_error",
            "param": "request_id",
            "code": "record_not_found",
        }
    }
    receipt = replace_id(parse_receipt(hidden_receipt(gateway)), "req_nope")
    report = run_audit(gateway.base_url, AUDIT_KEY, receipt)
    assert [f.reason for f in report.findings] == [Reason.UNANSWERED] and not report.ok


def replace_id(receipt: Receipt, request_id: str) -> Receipt:
    return Receipt(
        request_id, receipt.seq, receipt.leaves, receipt.root, receipt.key_id, receipt.signature
    )


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"request_id": "req_x", "nonce": "00" * 15}, "nonce"),
        ({"request_id": "req_x", "nonce": "zz" * 16}, "nonce"),
        ({"request_id": "req_x", "nonce": "00" * 16, "samples": 0}, "samples"),
        ({"request_id": "req_x", "nonce": "00" * 16, "samples": 257}, "samples"),
        ({"nonce": "00" * 16}, "request_id"),
    ],
)
def test_bad_challenges_are_400(gateway: GatewayServer, body: dict[str, Any], param: str) -> None:
    response = challenge(gateway, body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_cli_exit_codes(gateway: GatewayServer, capsys: pytest.CaptureFixture[str]) -> None:
    receipt = json.dumps(hidden_receipt(gateway))
    base = ["audit", "--url", gateway.base_url, "--receipt", receipt]
    assert cli.main([*base, "--audit-key", AUDIT_KEY]) == 0
    assert "OK" in capsys.readouterr().out
    assert cli.main([*base, "--audit-key", "sk-alice"]) == 2
    assert "403" in capsys.readouterr().err
    unknown = json.dumps({**json.loads(receipt), "request_id": "req_nope"})
    assert cli.main([*base[:-1], unknown, "--audit-key", AUDIT_KEY]) == 1
    assert "unanswered" in capsys.readouterr().out
    assert cli.main(["audit", "--url", "http://127.0.0.1:9", "--receipt", receipt,
                     "--audit-key", AUDIT_KEY]) == 2  # fmt: skip
    assert cli.main([*base[:-1], "{not json", "--audit-key", AUDIT_KEY]) == 2


def test_cli_tokenizer_check_fails_exact_and_warns_under_report(
    gateway: GatewayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace

    # A word-level tokenizer over the sim's reasoning words: its ids are not the sim's, so every
    # opened block is a mismatch, which is what this test needs to see reported.
    vocab = {word.strip(): i for i, word in enumerate(REASONING_WORDS)} | {"[UNK]": 99}
    tokenizer = Tokenizer(WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()  # type: ignore[assignment]
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    receipt = json.dumps(hidden_receipt(gateway))
    base = ["audit", "--url", gateway.base_url, "--receipt", receipt, "--audit-key", AUDIT_KEY]
    assert cli.main([*base, "--tokenizer", str(path), "--samples", "2"]) == 1
    assert "FAIL retokenize_mismatch" in capsys.readouterr().out
    assert cli.main([*base, "--tokenizer", str(path), "--token-mismatch", "report"]) == 0
    assert "WARN retokenize_mismatch" in capsys.readouterr().out
    broken = tmp_path / "broken.json"
    broken.write_text("not a tokenizer")
    assert cli.main([*base, "--tokenizer", str(broken)]) == 2
    assert "cannot load tokenizer" in capsys.readouterr().err


# -- protocol 2: embedding fingerprints -------------------------------------------------------


@pytest.fixture(scope="module")
def gateway_v2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    pytest.importorskip("onnxruntime")
    config = sim_config(
        tmp_path_factory.mktemp("audit_v2"),
        audit_key=AUDIT_KEY,
        ledger={"block_size": 2},
        audit={"embeddings": "on", "full_openings": ["bob"], "challenges_per_minute": 30},
    )
    with GatewayServer(config) as server:
        yield server


def test_v2_records_commit_embeddings_and_open_them_without_text(
    gateway_v2: GatewayServer,
) -> None:
    receipt = hidden_receipt(gateway_v2)
    record = one_record(gateway_v2, receipt["request_id"])
    assert record["commitment"]["protocol"] == 2
    assert record["commitment"]["embedding"] == MODEL_ID
    opening = gateway_v2.runtime.recorder.ledger.hidden(receipt["request_id"])
    assert opening is not None and opening.protocol == 2
    response = challenge(gateway_v2, Challenge(receipt["request_id"], os.urandom(16), 8).to_dict())
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["openings"] == [] and len(body["blocks"]) == 8
    # Embeddings only: no reasoning word, no token id list, no text key anywhere in the answer.
    assert not any(word in response.text for word in REASONING_WORDS)
    assert all(
        "text" not in b and "token_ids" not in b and "text_key" not in b for b in body["blocks"]
    )
    report = run_audit(gateway_v2.base_url, AUDIT_KEY, parse_receipt(receipt), samples=8)
    assert report.ok and report.protocol == 2 and len(report.blocks) == 4, report.findings
    assert all(b.embedding is not None and b.text is None for b in report.blocks)


def test_full_openings_need_the_tenants_consent(gateway_v2: GatewayServer) -> None:
    alice = hidden_receipt(gateway_v2)
    body = Challenge(alice["request_id"], os.urandom(16), 4, "full").to_dict()
    refused = challenge(gateway_v2, body)
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "reveal"
    completion = client(gateway_v2, "sk-bob").chat.completions.create(
        model="sim-hidden", messages=MESSAGES
    )
    assert completion.model_extra is not None
    bob = completion.model_extra["receipt"]
    answer = challenge(
        gateway_v2, Challenge(bob["request_id"], os.urandom(16), 8, "full").to_dict()
    )
    assert answer.status_code == 200, answer.text
    assert any(word in answer.text for word in REASONING_WORDS)
    from fairgate.metering.audit import AuditResponse

    response = AuditResponse.from_dict(answer.json())
    assert all(b.opening.full and b.opening.content_matches() for b in response.blocks)


def test_the_whole_audit_through_the_cli_gives_a_verdict(
    gateway_v2: GatewayServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    receipt = hidden_receipt(gateway_v2)
    prompt = tmp_path / "prompt.json"
    prompt.write_text(json.dumps(MESSAGES))
    answer = tmp_path / "answer.txt"
    answer.write_text("the answer")
    base = ["audit", "--url", gateway_v2.base_url, "--audit-key", AUDIT_KEY,
            "--receipt", json.dumps(receipt),
            "--prompt", str(prompt), "--answer", str(answer)]  # fmt: skip
    code = cli.main([*base, "--samples", "8", "--json"])
    verdict = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and verdict["verdict"] in ("honest", "inflated")
    assert verdict["blocks_opened"] == 4 and verdict["expected_hidden_tokens"] is not None
    assert (code == 0) == (verdict["verdict"] == "honest")
    code = cli.main([*base, "--samples", "8", "--checks", "learned", "--json"])
    learned = json.loads(capsys.readouterr().out)
    assert (code == 0) == (learned["verdict"] == "honest") and learned["blocks_opened"] == 4
    assert cli.main([*base[:7], "--prompt", str(prompt)]) == 2  # --prompt without --answer
    assert "together" in capsys.readouterr().err


def test_the_challenge_endpoint_is_rate_limited_per_key(gateway_v2: GatewayServer) -> None:
    rid = hidden_receipt(gateway_v2)["request_id"]
    codes = [
        challenge(gateway_v2, Challenge(rid, os.urandom(16), 1).to_dict(), ADMIN_KEY).status_code
        for _ in range(31)
    ]
    assert codes[:30] == [200] * 30 and codes[30] == 429
    limited = challenge(gateway_v2, Challenge(rid, os.urandom(16), 1).to_dict(), ADMIN_KEY)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["type"] == "rate_limit_error"
