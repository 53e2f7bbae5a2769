"""Receipts verify with the public key the gateway publishes; a full queue answers 429."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai

from fairgate.metering.canonical import canonical_json
from fairgate.metering.signing import PublicKey
from tests.gateway.conftest import client, one_record
from tests.support.gateway_server import GatewayServer, sim_config

MESSAGES = [{"role": "user", "content": "hello"}]


def test_receipt_signature_verifies_with_the_published_jwks(gateway: GatewayServer) -> None:
    completion = client(gateway).chat.completions.create(model="sim-hidden", messages=MESSAGES)
    receipt = completion.model_extra["receipt"]
    jwks = httpx.get(gateway.base_url + "/.well-known/fairgate-keys").json()
    keys = {jwk["kid"]: PublicKey.from_jwk(jwk) for jwk in jwks["keys"]}
    assert all(jwk["kty"] == "OKP" and jwk["crv"] == "Ed25519" for jwk in jwks["keys"])
    record = one_record(gateway, receipt["request_id"])
    assert record["signature"] == receipt["signature"]
    assert record["commitment"]["root"] == receipt["root"]
    unsigned = {k: v for k, v in record.items() if k != "signature"}
    import base64

    signature = base64.urlsafe_b64decode(receipt["signature"] + "==")
    assert keys[receipt["key_id"]].verify(signature, canonical_json(unsigned))
    tampered = dict(unsigned, tenant="mallory")
    assert not keys[receipt["key_id"]].verify(signature, canonical_json(tampered))


def test_queue_bound_gives_429_with_retry_after(tmp_path: Path) -> None:
    config = sim_config(
        tmp_path,
        models=[
            {
                "name": "slow",
                "provider": "sim",
                "sim": {"seconds_per_token": 0.05, "content_tokens": 20},
            }
        ],
        scheduler={"max_inflight_per_replica": 1, "max_queued_per_tenant": 2},
    )

    async def burst(base_url: str) -> list[object]:
        api = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key="sk-alice", max_retries=0)
        calls = [api.chat.completions.create(model="slow", messages=MESSAGES) for _ in range(6)]
        return await asyncio.gather(*calls, return_exceptions=True)

    with GatewayServer(config) as server:
        results = asyncio.run(burst(server.base_url))
        limited = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert limited and len(limited) <= 3
        assert all(int(r.response.headers["retry-after"]) >= 1 for r in limited)
        assert all(r.body["type"] == "rate_limit_error" for r in limited)  # type: ignore[index]
        statuses = sorted(r["status"] for r in server.records())
        assert statuses.count("rate_limited") == len(limited)
        assert len(statuses) == 6
