"""The ``openai`` provider's health probe, sent on its streams' keep-alive pool."""

from __future__ import annotations

from fairgate.replicas.openai_http import OpenAIReplica
from tests.support.fake_engine import FakeEngine


async def _probe(url: str, times: int = 1) -> list[bool]:
    replica = OpenAIReplica("r", "tiny", url)
    try:
        return [await replica.check_health() for _ in range(times)]
    finally:
        await replica.aclose()


async def test_a_healthy_engine_answers_its_probe() -> None:
    with FakeEngine() as engine:
        assert await _probe(engine.url, times=2) == [True, True]
    assert engine.requests == ["/health", "/health"]


async def test_a_server_without_health_is_probed_on_its_models() -> None:
    with FakeEngine() as engine:
        engine.health_status = 404
        assert await _probe(engine.url) == [True]
    assert engine.requests == ["/health", "/v1/models"]


async def test_an_unwell_or_gone_engine_is_not_healthy() -> None:
    with FakeEngine() as engine:
        engine.health_status = 503
        assert await _probe(engine.url) == [False]
        gone = engine.url
    assert await _probe(gone) == [False]


async def test_a_base_url_with_a_path_keeps_it() -> None:
    with FakeEngine() as engine:
        assert await _probe(engine.url + "/prefix") == [False]  # neither path is served there
    assert engine.requests == ["/prefix/health", "/prefix/v1/models"]
