"""``/v1/responses`` in front of a real vLLM server (the tiny reasoning model), `openai` provider.

The engine's own chat answer, asked directly, is the reference: the gateway translates a
Responses request into that chat request, and must report the same usage, hide the reasoning
completely and still count every reasoning token.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from fairgate.gateway.config import parse_config
from tests.support.gateway_server import GatewayServer
from tests.support.node_sdk import run_script
from tests.support.tiny_reasoner import (
    CONTENT_TEXT,
    REASONING_TEXT,
    THINK_END,
    THINK_START,
    build_tiny_reasoner,
)
from tests.support.vllm_server import VllmServer, start_vllm_server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

QUESTION = "What is the answer to everything?"
_WORDS = REASONING_TEXT.split()
REASONING_PHRASES = [" ".join(_WORDS[i : i + 3]) for i in range(len(_WORDS) - 2)]
STREAM_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    model_dir = build_tiny_reasoner()
    log = tmp_path_factory.mktemp("vllm") / "vllm.log"
    with start_vllm_server(model_dir, log_path=log, served_model_name="tiny-upstream") as server:
        yield server


@pytest.fixture(scope="module")
def gateway(
    engine: VllmServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayServer]:
    model_dir = str(build_tiny_reasoner())
    model = {"provider": "openai", "endpoints": [engine.base_url], "tokenizer": model_dir}
    config = parse_config(
        {
            "data_dir": str(tmp_path_factory.mktemp("gateway")),
            "tenants": [{"name": "alice", "api_keys": ["sk-alice"]}],
            # one request at a time on the engine, so that a second one provably waits
            "scheduler": {"max_inflight_per_replica": 1, "adaptive_inflight": False},
            "models": [
                {**model, "name": "tiny", "reasoning": "hidden"},
                {**model, "name": "tiny-visible", "reasoning": "visible"},
            ],
        }
    )
    with GatewayServer(config) as server:
        yield server


def _client(gateway: GatewayServer) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key="sk-alice", max_retries=0, timeout=120
    )


def _direct_chat(engine: VllmServer, messages: list[dict[str, str]]) -> dict[str, Any]:
    body = {"model": "tiny-upstream", "messages": messages, "return_token_ids": True}
    response = httpx.post(engine.url("/v1/chat/completions"), json=body, timeout=120)
    response.raise_for_status()
    return response.json()


def _records(gateway: GatewayServer, request_id: str) -> list[dict[str, Any]]:
    return [r for r in gateway.records() if r["request_id"] == request_id]


def _assert_engine_usage(usage: Any, direct: dict[str, Any]) -> None:
    engine = direct["usage"]
    assert usage.input_tokens == engine["prompt_tokens"]
    assert usage.output_tokens == engine["completion_tokens"]
    reasoning = engine["completion_tokens_details"]["reasoning_tokens"]
    assert reasoning > 0
    assert usage.output_tokens_details.reasoning_tokens == reasoning
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens


def test_create_usage_equals_the_engines_counts(engine: VllmServer, gateway: GatewayServer) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": QUESTION}]
    direct = _direct_chat(engine, messages)
    raw = _client(gateway).responses.with_raw_response.create(
        model="tiny", instructions="Be brief.", input=[{"role": "user", "content": QUESTION}]
    )
    response = raw.parse()
    _assert_engine_usage(response.usage, direct)
    assert response.status == "completed"
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == direct["choices"][0]["message"]["content"] == CONTENT_TEXT
    receipt = response.model_extra["receipt"]
    assert receipt["request_id"] == raw.headers["x-request-id"]
    assert receipt["leaves"] == direct["usage"]["completion_tokens_details"]["reasoning_tokens"]
    (record,) = _records(gateway, receipt["request_id"])
    assert record["status"] == "ok"
    assert record["usage"]["completion_tokens"] == response.usage.output_tokens


def test_stream_helper(engine: VllmServer, gateway: GatewayServer) -> None:
    direct = _direct_chat(engine, [{"role": "user", "content": QUESTION}])
    with _client(gateway).responses.stream(model="tiny", input=QUESTION) as stream:
        events = list(stream)
        final = stream.get_final_response()
    types = [e.type for e in events]
    assert [t for i, t in enumerate(types) if i == 0 or t != types[i - 1]] == STREAM_EVENTS
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == final.output_text == CONTENT_TEXT
    _assert_engine_usage(final.usage, direct)
    (record,) = _records(gateway, final.model_extra["receipt"]["request_id"])
    assert record["status"] == "ok"


@pytest.mark.timeout(300)
def test_node_sdk(engine: VllmServer, gateway: GatewayServer) -> None:
    """Before the tests that run a 1,900-token hog: after one, this tiny model's greedy answer
    has been seen to flip at a close call ("... and keep" -> "Because" instead of "the", in 2 of 5
    runs of this file) and never close its reasoning, so the stream carries no visible text. The
    gateway relayed that faithfully (the engine's own chunks, captured); it is the model's
    numerics, not ours."""
    result = run_script("responses.mjs", gateway.base_url + "/v1", "sk-alice", "tiny")
    assert result["created"]["output_text"] == CONTENT_TEXT
    assert result["created"]["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    assert result["stream"]["deltas"] == CONTENT_TEXT, json.dumps(result["stream"])
    assert result["stream"]["types"][-1] == "response.completed", result["stream"]
    assert result["error"]["param"] == "tools"


@pytest.mark.parametrize("stream", [False, True])
def test_hidden_reasoning_leaves_no_byte(gateway: GatewayServer, stream: bool) -> None:
    body = {"model": "tiny", "input": QUESTION, "stream": stream}
    with httpx.Client(
        base_url=gateway.base_url, timeout=120, headers={"Authorization": "Bearer sk-alice"}
    ) as http:
        shown = http.post("/v1/responses", json={**body, "model": "tiny-visible"}).text
        raw = http.post("/v1/responses", json=body).content.decode()
    # the same request on the visible model does reason, so the scan below could fail
    assert REASONING_PHRASES[0] in shown and '"type":"reasoning"' in shown
    assert THINK_START not in raw and THINK_END not in raw
    for phrase in REASONING_PHRASES:
        assert phrase not in raw, f"reasoning {phrase!r} leaked"
    assert '"type":"reasoning"' not in raw and "reasoning_text" not in raw
    final = _final(raw, stream)
    assert final["usage"]["output_tokens_details"]["reasoning_tokens"] > 0
    assert "".join(c["text"] for c in final["output"][0]["content"]) == CONTENT_TEXT


def test_visible_reasoning_is_a_reasoning_item(gateway: GatewayServer) -> None:
    response = _client(gateway).responses.create(model="tiny-visible", input=QUESTION)
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output[0].content[0].text.strip() == REASONING_TEXT
    assert response.output_text == CONTENT_TEXT


@pytest.mark.xfail(
    strict=False,
    reason="open (2026-12-02): while the in-process gateway serves the 1,900-token hog, this "
    "whole test process stalls for 1.5-6.5 s at a time (a 1 ms ticker thread and even "
    "faulthandler's C watchdog thread miss their wake-ups; also at bbbfc46 and with audit "
    "embeddings off), so the impatient request goes out only after the hog ended; not the "
    "GIL, cause not found (the VM's scheduling beside the vLLM engine's threads?)",
)
def test_client_gone_while_queued_leaves_one_record(gateway: GatewayServer) -> None:
    """A long chat holds the engine's one slot; a Responses request waits and its client
    gives up before the first byte: one record, nothing generated. (The tiny model's whole
    answer takes less time than noticing a disconnect mid-stream, and the Responses API has no
    ``ignore_eos``; tests/gateway/test_responses.py covers that case on the slow sim.)"""
    hog = {
        "model": "tiny",
        "messages": [{"role": "user", "content": QUESTION}],
        "max_tokens": 1900,  # 2.5-4.5 s of the engine's one slot
        "ignore_eos": True,
    }
    headers = {"Authorization": "Bearer sk-alice"}
    # The gateway runs in a thread of this process and relays the hog at full speed: with the
    # default 5 ms switch interval this thread's I/O waits behind it (the GIL convoy) long
    # enough for the hog to end first.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    with (
        httpx.Client(base_url=gateway.base_url, timeout=120, headers=headers) as http,
        httpx.Client(
            base_url=gateway.base_url, headers=headers, timeout=httpx.Timeout(120, read=1.0)
        ) as impatient,
        ThreadPoolExecutor(1) as pool,
    ):
        before = {r["request_id"] for r in gateway.records()}
        holding = pool.submit(http.post, "/v1/chat/completions", json=hog)
        time.sleep(0.5)  # admitted and generating
        try:
            with pytest.raises(httpx.ReadTimeout):
                impatient.post("/v1/responses", json={"model": "tiny", "input": QUESTION})
        finally:
            sys.setswitchinterval(interval)
        hog_id = holding.result(60).headers["x-request-id"]
    new: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while not new and time.monotonic() < deadline:
        new = [r for r in gateway.records() if r["request_id"] not in before | {hog_id}]
        time.sleep(0.2)
    assert len(new) == 1
    assert new[0]["status"] == "client_disconnected"
    assert new[0]["usage"]["completion_tokens"] == 0


def test_oversize_input_is_a_400_naming_input(gateway: GatewayServer) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(gateway).responses.create(model="tiny", input="word " * 5000)
    assert caught.value.code == "context_length_exceeded"
    assert caught.value.param == "input"


def _final(raw: str, stream: bool) -> dict[str, Any]:
    if not stream:
        result: dict[str, Any] = json.loads(raw)
        return result
    datas = [line[6:] for line in raw.splitlines() if line.startswith("data: ")]
    last = json.loads(datas[-1])
    assert last["type"] == "response.completed"
    response: dict[str, Any] = last["response"]
    return response
