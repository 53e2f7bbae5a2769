"""The obfuscated-prompt guard: its windows, its ratios on SmolLM2's real tokenizer, and a
refused prompt through a gateway (400 with its own code, one ledger record)."""

from __future__ import annotations

import base64
import codecs
from collections.abc import Callable, Iterator

import httpx
import pytest

from bench.prompt_guard import DEFAULT_CACHE, LEET, smollm2_tokenizer
from fairgate.gateway.prompt_guard import MIN_WINDOW_CHARS, WINDOW_CHARS, chars_per_token, windows
from tests.gateway.conftest import one_record
from tests.support.gateway_server import GatewayServer, sim_config

THRESHOLD = 2.0  # README "Tenant controls": bench/prompt_guard.py's table
PROSE = (
    "The gateway sits in front of several model replicas and decides which tenant's request "
    "runs next. Each tenant has a weight, and the scheduler tries to give every tenant its "
    "share of the tokens, even when one of them sends far more requests than the others. "
    "Operators can read every request back from the ledger, which signs and chains records."
)


def test_windows_cover_the_text_and_a_short_tail_joins_the_last() -> None:
    text = "x" * (2 * WINDOW_CHARS + MIN_WINDOW_CHARS - 1)
    parts = list(windows(text))
    assert "".join(parts) == text and len(parts) == 2
    assert len(parts[-1]) == WINDOW_CHARS + MIN_WINDOW_CHARS - 1


def test_short_text_is_not_judged() -> None:
    assert chars_per_token("aGVsbG8=", lambda t: list(range(len(t)))) is None


def test_the_lowest_window_counts() -> None:
    # 2 characters per token, except one window of 1 character per token in the middle
    def encode(text: str) -> list[int]:
        return list(range(len(text) if "#" in text else len(text) // 2))

    text = "a" * WINDOW_CHARS + "#" * WINDOW_CHARS + "a" * WINDOW_CHARS
    assert chars_per_token(text, encode) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def encode() -> Callable[[str], list[int]]:
    return smollm2_tokenizer()


@pytest.mark.timeout(300)  # the first run reads the tokenizer out of the packaged GGUF
def test_smollm2_ratios_separate_prose_from_encodings(encode: Callable[[str], list[int]]) -> None:
    natural = chars_per_token(PROSE, encode)
    assert natural is not None and natural > 3.0
    for obfuscated in (
        base64.b64encode(PROSE.encode()).decode(),
        PROSE.encode().hex(),
        codecs.encode(PROSE, "rot13"),
        PROSE.lower().translate(LEET),
        PROSE[:150] + base64.b64encode(PROSE[:250].encode()).decode() + PROSE[150:],
    ):
        ratio = chars_per_token(obfuscated, encode)
        assert ratio is not None and ratio < THRESHOLD, obfuscated[:40]


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, encode: Callable[[str], list[int]]
) -> Iterator[GatewayServer]:
    config = sim_config(
        tmp_path_factory.mktemp("prompt-guard"),
        tenants=[
            {"name": "guarded", "api_keys": ["sk-g"], "prompt_guard": {"min_chars_per_token": 2}},
            {"name": "open", "api_keys": ["sk-o"]},
        ],
        models=[
            {
                "name": "sim-real-tokenizer",
                "provider": "sim",
                "tokenizer": str(DEFAULT_CACHE / "tokenizer"),
            }
        ],
    )
    with GatewayServer(config) as server:
        yield server


def _chat(gateway: GatewayServer, key: str, content: str) -> httpx.Response:
    body = {"model": "sim-real-tokenizer", "messages": [{"role": "user", "content": content}]}
    return httpx.post(
        gateway.base_url + "/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_a_refused_prompt_is_a_400_with_its_own_code_and_a_record(gateway: GatewayServer) -> None:
    encoded = base64.b64encode(PROSE.encode()).decode()
    refused = _chat(gateway, "sk-g", encoded)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "prompt_obfuscated" and error["param"] == "messages"
    assert "characters per token" in error["message"]
    record = one_record(gateway, refused.headers["x-request-id"])
    assert record["status"] == "prompt_refused" and record["status_code"] == 400
    assert _chat(gateway, "sk-g", PROSE).status_code == 200
    assert _chat(gateway, "sk-o", encoded).status_code == 200  # off unless configured
