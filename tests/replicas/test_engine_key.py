"""Engines on a cluster authenticate the gateway: each actor is created with a random key, hands
it to its engine through the environment (vLLM's VLLM_API_KEY), and the gateway, creating or
adopting the actor, sends it. Checked against vLLM's own authentication middleware."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from vllm.entrypoints.serve.middleware.authenticate import AuthenticationMiddleware

from fairgate.replicas import ray_vllm
from fairgate.replicas.engine_host import Placement
from fairgate.replicas.ray_vllm import ActorOptions, RayVllmReplica, VllmEngineActor
from fairgate.replicas.vllm_process import VllmSpec, vllm_env

SPEC = VllmSpec(model="m", served_model_name="tiny")


class Method:
    def __init__(self, result: Callable[..., Awaitable[Any]]) -> None:
        self.result = result

    def remote(self, *args: Any) -> Awaitable[Any]:
        return self.result(*args)


class StandInActor:
    """Ray's handle to a ``VllmEngineActor``, with the real actor's methods behind it."""

    def __init__(self, real: VllmEngineActor) -> None:
        self.api_key = Method(real.api_key)
        self.start = Method(_nothing)


async def _nothing() -> None:
    return None


async def test_the_actor_hands_its_key_to_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    actor = VllmEngineActor(SPEC, Placement(index=0), api_key="sk-engine-1")
    assert await actor.api_key() == "sk-engine-1"
    assert actor._host.api_key == "sk-engine-1"  # its engine is started with it
    # The key goes to the engine's process only, never into this one's environment (where
    # it would leak into every other server this process starts).
    assert "VLLM_API_KEY" not in vllm_env()
    assert await VllmEngineActor(SPEC, Placement(index=1)).api_key() is None


def _engine(key: str) -> AuthenticationMiddleware:
    async def ok(request: Any) -> JSONResponse:
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/v1/models", ok), Route("/health", ok)])
    return AuthenticationMiddleware(app, tokens=[key])


@pytest.mark.parametrize("adopted", [False, True])
async def test_the_gateway_sends_the_actors_key(
    monkeypatch: pytest.MonkeyPatch, adopted: bool
) -> None:
    monkeypatch.delenv("VLLM_API_KEY", raising=False)
    created: list[str] = []

    def get_or_create(self: RayVllmReplica) -> tuple[Any, bool]:
        key = "sk-from-an-earlier-gateway" if adopted else ray_vllm.secrets.token_urlsafe(32)
        created.append(key)
        return StandInActor(VllmEngineActor(SPEC, Placement(index=0), api_key=key)), adopted

    monkeypatch.setattr(RayVllmReplica, "_get_or_create", get_or_create)
    if adopted:  # the live actor's configuration is what this gateway wants
        monkeypatch.setattr(ray_vllm, "spec_key", lambda spec, placement: "same")

        async def status() -> Any:
            return type("Status", (), {"spec_key": "same"})()

        monkeypatch.setattr(StandInActor, "status", Method(status), raising=False)
    replica = RayVllmReplica("tiny", 0, SPEC, ActorOptions(local=False))
    await replica._create()
    (key,) = created
    engine = _engine(key)
    headers = dict(replica._client.headers)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=engine), base_url="http://engine"
    ) as client:
        assert (await client.get("/v1/models", headers=headers)).status_code == 200
        assert (await client.get("/v1/models")).status_code == 401  # anyone else
        assert (await client.get("/health")).status_code == 200  # health stays open
    assert replica.adopted is adopted
    await replica.aclose()


def test_each_created_actor_gets_its_own_key(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    class ActorClass:
        def options(self, **options: Any) -> ActorClass:
            assert options["name"] == "fairgate/tiny/0"
            return self

        def remote(self, *args: Any) -> str:
            calls.append(args)
            return "handle"

    def no_actor(name: str, namespace: str) -> None:
        raise ValueError(name)

    monkeypatch.setattr(ray_vllm.ray, "is_initialized", lambda: True)
    monkeypatch.setattr(ray_vllm.ray, "get_actor", no_actor)
    monkeypatch.setattr(ray_vllm, "_actor_class", ActorClass)
    for _ in range(2):
        replica = RayVllmReplica("tiny", 0, SPEC, ActorOptions(local=False))
        assert replica._get_or_create() == ("handle", False)
    (spec, _, first), (_, _, second) = calls
    assert spec == SPEC and first != second and len(first) >= 40
