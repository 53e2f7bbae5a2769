"""hypothesis-generated request bodies against the real gateway: arbitrary JSON, chat-shaped
bodies with odd values in every field, and raw bytes that are not JSON at all. No 5xx, no
traceback, OpenAI-shaped errors, and the hidden model's reasoning never in an answer."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fairgate.replicas.sim import REASONING_WORDS
from tests.fuzz.conftest import KEY, MODELS, assert_clean
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(120)
PATHS = ("/v1/chat/completions", "/v1/completions", "/v1/responses")
FUZZ = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck)
)
HIDDEN = re.compile(r"\b(" + "|".join(REASONING_WORDS) + r")\b")

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=20,
)
content = st.one_of(
    st.text(max_size=200),
    st.none(),
    st.integers(),
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "image_url", "input_text", "bogus"])},
            optional={"text": st.text(max_size=50) | st.integers()},
        ),
        max_size=3,
    ),
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "assistant", "developer", "tool", "x"])},
        optional={"content": content, "name": st.text(max_size=10)},
    ),
    max_size=4,
)
chat_bodies = st.fixed_dictionaries(
    {"model": st.sampled_from([*MODELS, "nope", ""]), "messages": messages},
    optional={
        "stream": st.booleans() | st.integers() | st.text(max_size=5),
        "max_tokens": st.integers(min_value=-5, max_value=10**12) | st.text(max_size=5),
        "max_completion_tokens": st.integers(min_value=-5, max_value=50),
        "temperature": st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=3),
        "top_p": st.floats(allow_nan=False, allow_infinity=False),
        "n": st.integers(min_value=-2, max_value=5),
        "stop": st.text(max_size=5) | st.lists(st.text(max_size=5), max_size=5) | st.integers(),
        "logprobs": st.booleans() | st.integers(),
        "top_logprobs": st.integers(min_value=-3, max_value=30),
        "stream_options": json_values,
        "tools": json_values,
        "response_format": json_values,
        "user": json_values,
        "seed": st.integers(min_value=-(2**70), max_value=2**70),
    },
)


def _post(gateway: GatewayServer, path: str, content: bytes) -> httpx.Response:
    headers = {**KEY, "content-type": "application/json"}
    return httpx.post(gateway.base_url + path, content=content, headers=headers, timeout=30)


def _check(response: httpx.Response, what: str, body: Any = None) -> None:
    assert_clean(response.status_code, response.text, what)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"], response.text
        assert set(error) == {"message", "type", "param", "code"}, response.text
    elif isinstance(body, dict) and body.get("model") == "fast-hidden":
        assert not HIDDEN.search(response.text), f"hidden reasoning in {response.text[:300]}"


@FUZZ
@given(path=st.sampled_from(PATHS), body=json_values)
def test_any_json_body(gateway: GatewayServer, path: str, body: Any) -> None:
    _check(_post(gateway, path, json.dumps(body).encode()), path, body)


@FUZZ
@given(body=chat_bodies)
def test_chat_shaped_bodies(gateway: GatewayServer, body: dict[str, Any]) -> None:
    _check(_post(gateway, "/v1/chat/completions", json.dumps(body).encode()), "chat", body)


@FUZZ
@given(path=st.sampled_from(PATHS), raw=st.binary(max_size=200))
def test_bytes_that_are_not_json(gateway: GatewayServer, path: str, raw: bytes) -> None:
    _check(_post(gateway, path, raw), path)


@FUZZ
@given(body=chat_bodies, cut=st.integers(min_value=1, max_value=400))
def test_truncated_json(gateway: GatewayServer, body: dict[str, Any], cut: int) -> None:
    raw = json.dumps(body).encode()
    _check(_post(gateway, "/v1/chat/completions", raw[: min(cut, len(raw) - 1)]), "truncated")
