"""Hidden reasoning stays hidden: not in any answer (chat, completions, Responses; whole and
streamed; with logprobs), not in an error, not in the INFO log, not in a ledger export or on
/metrics. The ledger does keep it, as the audit store's openings, and only the audit path
reads them out: the test first checks the text is really there to be leaked."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import sys
import time
from typing import Any

import pytest

from fairgate.metering.audit import Challenge
from fairgate.replicas.sim import SimReplica
from tests.security.conftest import AUDIT_KEY, HIDDEN, call, chat
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(60)
CLI = [sys.executable, "-m", "fairgate.gateway.cli"]

ASKS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "stream": True}),
    (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": "hi"}], "logprobs": True, "top_logprobs": 3},
    ),
    ("/v1/completions", {"prompt": "hi"}),
    ("/v1/completions", {"prompt": "hi", "stream": True, "logprobs": 2}),
    ("/v1/responses", {"input": "hi"}),
    ("/v1/responses", {"input": "hi", "stream": True}),
]


@pytest.fixture
def info_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO)
    return caplog


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


@pytest.mark.parametrize(("path", "body"), ASKS)
def test_no_answer_shows_hidden_reasoning(
    gateway: GatewayServer, info_log: pytest.LogCaptureFixture, path: str, body: dict[str, Any]
) -> None:
    response = call(gateway, "POST", path, "sk-alice", json={"model": "sim-hidden", **body})
    assert response.status_code == 200, response.text
    assert not HIDDEN.search(response.text), response.text[:500]
    assert not HIDDEN.search(_logged(info_log))
    request_id = response.headers["x-request-id"]
    opening = gateway.runtime.recorder.ledger.hidden(request_id)
    assert opening is not None and HIDDEN.search(json.dumps(opening.to_dict()))  # it is there


def test_errors_show_no_hidden_reasoning(
    gateway: GatewayServer, info_log: pytest.LogCaptureFixture
) -> None:
    replicas = list(gateway.runtime.models["sim-hidden"].replicas.values())
    for replica in replicas:  # every replica dies mid-reasoning: nowhere left to retry
        assert isinstance(replica, SimReplica)
        replica.kill(after_tokens=3)
    try:
        whole = chat(gateway, "sk-alice")
        streamed = chat(gateway, "sk-alice", stream=True)
    finally:
        for replica in replicas:
            replica.revive()
        _wait_served(gateway)
    for response in (whole, streamed):
        assert response.status_code == 503, response.text
        assert not HIDDEN.search(response.text), response.text
    assert not HIDDEN.search(_logged(info_log))


def _wait_served(gateway: GatewayServer) -> None:
    """Until the health check has seen the revived replicas."""
    deadline = time.monotonic() + 10
    while chat(gateway, "sk-alice").status_code != 200:
        assert time.monotonic() < deadline, "the replicas did not come back"
        time.sleep(0.2)


def test_openings_leave_only_through_the_audit_path(gateway: GatewayServer, tmp_path: Any) -> None:
    request_id = chat(gateway, "sk-alice").json()["receipt"]["request_id"]
    files = [p for p in gateway.config.data_dir.rglob("ledger*") if p.is_file()]
    assert files, "no ledger file found"
    for path in files:  # the audit store is readable by the gateway's user only
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    export = tmp_path / "export.jsonl"
    config = tmp_path / "fairgate.yaml"
    config.write_text(json.dumps({"data_dir": str(gateway.config.data_dir)}))
    done = subprocess.run(
        [*CLI, "ledger", "export", "--out", str(export), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert request_id in export.read_text() and not HIDDEN.search(export.read_text())
    assert not HIDDEN.search(call(gateway, "GET", "/metrics", None).text)
    body = {**Challenge(request_id, os.urandom(16)).to_dict(), "reveal": "full"}
    audited = call(gateway, "POST", "/v1/audit/challenge", AUDIT_KEY, json=body)
    assert audited.status_code == 200 and HIDDEN.search(audited.text)  # the one way out
