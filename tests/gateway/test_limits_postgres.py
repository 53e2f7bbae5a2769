"""Limits across two real ``fairgate serve`` gateways sharing one real PostgreSQL (initdb in a
temp dir, see tests/metering/conftest.py): the total they admit together stays within the
limit, and every request, admitted or refused, has exactly one record in the shared ledger."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from fairgate.gateway.limit_store import LEASE_S, WINDOW_S, Ask, PostgresLimitStore
from fairgate.gateway.shared_keys import SYNC_S
from fairgate.metering.tokens import WordTokenizer
from tests.faults.process import GatewayProcess, free_port, write_config
from tests.metering.conftest import postgres_server, postgres_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.timeout(240)
RPM, CONCURRENT = 20, 2
T0 = 1_800_000_000.0
MESSAGES = [{"role": "user", "content": "Shared limits, please."}]
PROMPT = len(WordTokenizer().encode_chat(MESSAGES))
COMPLETION = 20  # the sim's whole answer, also the requests' max_tokens: estimate = cost
PRICE = {"prompt": 1000, "completion": 1000}  # per million: 0.001 a token
REQUEST_COST = Decimal("0.001") * (PROMPT + COMPLETION)


@pytest.fixture
def gateways(tmp_path: Path, postgres_url: str) -> Iterator[list[GatewayProcess]]:  # noqa: F811
    tenants = [
        {"name": "rpm", "api_keys": ["sk-rpm"], "limits": {"requests_per_minute": RPM}},
        {"name": "conc", "api_keys": ["sk-conc"], "limits": {"max_concurrent": CONCURRENT}},
        {
            "name": "tpm",
            "api_keys": ["sk-tpm"],
            "limits": {"tokens_per_minute": 5 * (PROMPT + COMPLETION)},
        },
        {
            "name": "spender",
            "api_keys": ["sk-spender"],
            "limits": {"budget": {"amount": str(3 * REQUEST_COST), "period": "month"}},
        },
    ]
    models = [
        {"name": "sim", "provider": "sim", "replicas": 2},
        {"name": "sim-slow", "provider": "sim", "sim": {"seconds_per_token": 0.15}},
        {"name": "sim-priced", "provider": "sim", "prices": PRICE},
    ]
    started: list[GatewayProcess] = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            config = write_config(
                tmp_path / name, tenants=tenants, models=models, ledger={"url": postgres_url}
            )
            started.append(GatewayProcess(config, free_port()).start(timeout=120))
        yield started
    finally:
        for gateway in started:
            gateway.kill()


async def _burst(
    gateways: list[GatewayProcess], key: str, model: str, count: int, **extra: Any
) -> list[httpx.Response]:
    body = {"model": model, "messages": MESSAGES, **extra}
    async with httpx.AsyncClient(timeout=60, headers={"Authorization": f"Bearer {key}"}) as http:
        return await asyncio.gather(
            *(
                http.post(gateways[i % 2].url + "/v1/chat/completions", json=body)
                for i in range(count)
            )
        )


def _records(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT record FROM fairgate_ledger_records").fetchall()
    return [json.loads(row[0]) for row in rows]


def _by_gateway(
    gateways: list[GatewayProcess], responses: list[httpx.Response]
) -> dict[int, Counter[int]]:
    counts: dict[int, Counter[int]] = {0: Counter(), 1: Counter()}
    for i, response in enumerate(responses):
        counts[i % 2][response.status_code] += 1
    return counts


def test_requests_per_minute_hold_across_two_gateways(
    gateways: list[GatewayProcess],
    postgres_url: str,  # noqa: F811
) -> None:
    responses = asyncio.run(_burst(gateways, "sk-rpm", "sim", 3 * RPM))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: RPM, 429: 2 * RPM}, statuses  # one gateway alone would allow RPM
    per_gateway = _by_gateway(gateways, responses)
    assert all(per_gateway[g][429] > 0 for g in (0, 1)), per_gateway  # both were limited
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 429}
    assert codes == {"rate_limit_requests_per_minute"}
    records = _records(postgres_url)
    ids = [r["request_id"] for r in records]
    assert len(ids) == len(set(ids)) == len(responses)
    assert sorted(ids) == sorted(r.headers["x-request-id"] for r in responses)
    assert Counter(r["status"] for r in records) == {"ok": RPM, "rate_limited": 2 * RPM}


def test_max_concurrent_holds_across_two_gateways(
    gateways: list[GatewayProcess],
) -> None:
    responses = asyncio.run(_burst(gateways, "sk-conc", "sim-slow", 8))  # each runs about 3 s
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: CONCURRENT, 429: 8 - CONCURRENT}, statuses
    codes = {r.json()["error"]["code"] for r in responses if r.status_code == 429}
    assert codes == {"rate_limit_max_concurrent"}
    again = asyncio.run(_burst(gateways, "sk-conc", "sim", 2))  # the holds left at settlement
    assert [r.status_code for r in again] == [200, 200]


def test_tokens_per_minute_hold_across_two_gateways(gateways: list[GatewayProcess]) -> None:
    responses = asyncio.run(_burst(gateways, "sk-tpm", "sim", 15, max_tokens=COMPLETION))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 5, 429: 10}, statuses
    used = sum(r.json()["usage"]["total_tokens"] for r in responses if r.status_code == 200)
    assert used == 5 * (PROMPT + COMPLETION)
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {
        "rate_limit_tokens_per_minute"
    }


def test_a_budget_holds_across_two_gateways(
    gateways: list[GatewayProcess],
    postgres_url: str,  # noqa: F811
) -> None:
    responses = asyncio.run(_burst(gateways, "sk-spender", "sim-priced", 9, max_tokens=COMPLETION))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 3, 429: 6}, statuses
    assert {r.json()["error"]["code"] for r in responses if r.status_code == 429} == {
        "budget_exceeded"
    }
    spent = [
        Decimal(r["cost"]["total"])
        for r in _records(postgres_url)
        if r["tenant"] == "spender" and r["status"] == "ok"
    ]
    assert sum(spent) == 3 * REQUEST_COST  # never past the budget, in the ledger's units


def test_the_postgres_store_is_exact_under_threads(postgres_url: str) -> None:  # noqa: F811
    import threading

    stores = [PostgresLimitStore(postgres_url, connections=3) for _ in range(2)]
    admitted: list[str] = []
    ask = Ask("requests", Decimal(1), Decimal(25), WINDOW_S)

    def worker(n: int) -> None:
        for i in range(20):
            if stores[n % 2].reserve("t", f"w{n}-{i}", [ask], T0) is None:
                admitted.append(f"w{n}-{i}")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert len(admitted) == 25


def test_the_postgres_store_renews_leases(postgres_url: str) -> None:  # noqa: F811
    store = PostgresLimitStore(postgres_url, connections=1)
    lease = Ask("concurrent", Decimal(1), Decimal(1), LEASE_S)
    assert store.reserve("t", "running", [lease], T0) is None
    store.renew(["running"], T0 + 2 * LEASE_S)
    assert store.reserve("t", "next", [lease], T0 + LEASE_S + 1) is not None  # still held
    assert store.reserve("t", "next", [lease], T0 + 2 * LEASE_S) is None  # then it ends
    store.close()


def _status_within(url: str, key: str, want: int, seconds: float = 10.0) -> tuple[int, float]:
    """How many tries, and seconds, until ``key`` gets ``want`` on the gateway at ``url``."""
    start = time.monotonic()
    body = {"model": "sim", "messages": MESSAGES}
    for tries in range(1, 1000):
        response = httpx.post(
            url + "/v1/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        waited = time.monotonic() - start
        if response.status_code == want:
            return tries, waited
        assert waited < seconds, f"{url}: {response.status_code}, not {want}, after {waited:.1f} s"
        time.sleep(0.1)
    raise AssertionError("unreachable")


def test_admin_keys_are_shared_by_the_gateways(gateways: list[GatewayProcess]) -> None:
    a, b = gateways
    admin = {"Authorization": "Bearer admin-secret"}
    created = httpx.post(a.url + "/admin/keys", json={"tenant": "erin"}, headers=admin)
    assert created.status_code == 200
    key, id_ = created.json()["key"], created.json()["id"]
    assert _status_within(a.url, key, 200)[0] == 1  # at once where it was made
    # The other gateway, at its next read (every SYNC_S; the slack is for a loaded machine).
    assert _status_within(b.url, key, 200)[1] <= SYNC_S + 3
    revoked = httpx.delete(f"{b.url}/admin/keys/{id_}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["tenant"] == "erin"
    assert _status_within(b.url, key, 401)[0] == 1
    assert _status_within(a.url, key, 401)[1] <= SYNC_S + 3
