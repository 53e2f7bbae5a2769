"""The capacity-limited engine model shared by the ``sim`` provider and the simulator."""

from __future__ import annotations

import asyncio

import pytest

from fairgate.replicas.engine_model import EngineModel, EngineParams, PrefixCache
from fairgate.replicas.sim import SimReplica, SimSettings
from fairgate.replicas.stream import EngineRequest, EngineUsage

P = EngineParams(
    max_num_seqs=2,
    step_s=0.01,
    step_s_per_seq=0.001,
    prefill_s_per_token=0.0001,
    prefill_chunk=100,
    cache_tokens=1024,
)


def _run(engine: EngineModel) -> list[tuple[float, list[str], list[str]]]:
    out = []
    while engine.has_work():
        step = engine.step()
        out.append((step.duration, [k for k, _ in step.first_tokens], step.finished))
    return out


def test_slots_fifo_and_gauges() -> None:
    engine = EngineModel(P)
    for i in range(3):
        engine.submit(f"r{i}", tuple(range(i * 100, i * 100 + 10)), 3)
    engine.step()
    assert (engine.num_running, engine.num_waiting) == (2, 1)
    steps = _run(engine)
    finished = [k for _, _, done in steps for k in done]
    assert finished == ["r0", "r1", "r2"]  # the third waited in the engine's FIFO


def test_step_time_grows_with_batch_and_prefill() -> None:
    engine = EngineModel(P)
    engine.submit("a", tuple(range(250)), 2)  # 250 uncached tokens: 3 chunks of <= 100
    durations = [d for d, _, _ in _run(engine)]
    assert durations[0] == pytest.approx(0.01 + 0.001 + 0.0001 * 100)
    assert len(durations) == 4  # three prefill steps (first token at the third), one decode
    assert durations[-1] == pytest.approx(0.011)


def test_prefix_cache_in_blocks_never_the_last_token() -> None:
    engine = EngineModel(P)
    prompt = tuple(range(64))
    engine.submit("a", prompt, 1)
    _run(engine)
    engine.submit("b", prompt, 1)
    step = engine.step()
    assert step.first_tokens == [("b", 48)]  # 64 tokens cached, the last block is recomputed


def test_lru_evicts_oldest_blocks() -> None:
    cache = PrefixCache(32, 16)
    cache.lookup_and_insert(tuple(range(32)))
    cache.lookup_and_insert(tuple(range(100, 132)))
    assert cache.lookup_and_insert(tuple(range(32))) == 0


def test_sim_replica_reports_waiting_when_full() -> None:
    async def main() -> tuple[int, int, list[int]]:
        replica = SimReplica("r", "m", SimSettings(max_num_seqs=1, seconds_per_token=0.005))

        async def one(i: int) -> int:
            req = EngineRequest(f"q{i}", "chat", {"max_tokens": 4}, (1, 2, 3, i))
            cached = -1
            async for event in replica.stream(req):
                if isinstance(event, EngineUsage):
                    cached = event.completion_tokens
            return cached

        tasks = [asyncio.create_task(one(i)) for i in range(3)]
        await asyncio.sleep(0.012)
        load = await replica.load()
        assert load is not None
        counts = await asyncio.gather(*tasks)
        await replica.aclose()
        return load.running, load.waiting, counts

    running, waiting, counts = asyncio.run(main())
    assert (running, waiting) == (1, 2)
    assert counts == [4, 4, 4]
