"""The ``openai`` provider's health probe, sent on its streams' keep-alive pool."""

from __future__ import annotations

from fairgate.replicas.openai_http import OpenAIReplica
from tests.support.fake_engine import FakeEngine


async def test_a_healthy_engine_answers_its_probe() -> None:
    with FakeEngine() as engine:
        replica = OpenAIReplica("r", "tiny", engine.url)
        try:
            assert await replica.check_health() is True
            assert await replica.check_health() is True
        finally:
            await replica.aclose()
    assert engine.requests == ["/health", "/health"]


async def test_a_server_without_health_is_probed_on_its_models() -> None:
    with FakeEngine() as engine:
        engine.health_status = 404
        replica = OpenAIReplica("r", "tiny", engine.url)
        try:
            assert await replica.check_health() is True
        finally:
            await replica.aclose()
    assert engine.requests == ["/health", "/v1/models"]


async def test_an_unwell_or_gone_engine_is_not_healthy() -> None:
    with FakeEngine() as engine:
        engine.health_status = 503
        replica = OpenAIReplica("r", "tiny", engine.url)
        try:
            assert await replica.check_health() is False
        finally:
            await replica.aclose()
        gone = engine.url
    replica = OpenAIReplica("r", "tiny", gone)
    try:
        assert await replica.check_health() is False
    finally:
        await replica.aclose()


async def test_a_base_url_with_a_path_keeps_it() -> None:
    with FakeEngine() as engine:
        replica = OpenAIReplica("r", "tiny", engine.url + "/prefix")
        try:
            assert await replica.check_health() is False  # /prefix/health is not found...
        finally:
            await replica.aclose()
    assert engine.requests == ["/prefix/health", "/prefix/v1/models"]  # ...nor its models
