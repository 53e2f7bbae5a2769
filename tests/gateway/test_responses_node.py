"""The official Node SDK's ``client.responses.create`` against the gateway, on the sim provider."""

from __future__ import annotations

import pytest

from fairgate.replicas.sim import REASONING_WORDS
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer
from tests.support.node_sdk import run_script

SIM_REASONING, SIM_CONTENT = 8, 12


@pytest.mark.timeout(300)
def test_node_sdk_create_stream_and_error(gateway: GatewayServer) -> None:
    result = run_script("responses.mjs", gateway.base_url + "/v1", "sk-alice", "sim-hidden")
    created = result["created"]
    assert created["status"] == "completed" and created["output_types"] == ["message"]
    assert len(created["output_text"].split()) == SIM_CONTENT
    assert created["usage"]["output_tokens_details"]["reasoning_tokens"] == SIM_REASONING
    record = one_record(gateway, created["receipt"]["request_id"])
    assert record["usage"]["prompt_tokens"] == created["usage"]["input_tokens"]
    assert record["usage"]["completion_tokens"] == created["usage"]["output_tokens"]

    stream = result["stream"]
    assert stream["types"][:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert stream["types"][-1] == "response.completed"
    assert stream["deltas"] == stream["final"]["output_text"]
    assert not any(word in stream["deltas"] for word in REASONING_WORDS)
    one_record(gateway, stream["final"]["receipt"]["request_id"])

    assert result["error"] == {"status": 400, "param": "tools", "type": "invalid_request_error"}
