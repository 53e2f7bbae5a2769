"""A short soak in CI (about 75 s): 20 tenants, 70 closed-loop clients (five tenants past
their queue bound, a few clients hanging up early) against a real ``fairgate serve`` in front
of capacity-limited sim engines (30 s), and the same in front of two OpenAI-compatible
upstream processes (22 s: the provider's HTTP connections must not pile up either).
``python -m bench.soak`` is the long one."""

from __future__ import annotations

import pytest

from bench.soak.gateway import Shape
from bench.soak.run import SoakResult, report, run_soak
from fairgate.scheduler import SchedulerConfig
from tests.support.fake_upstream import FakeUpstream

pytestmark = pytest.mark.timeout(60)
MIB = 1024 * 1024


@pytest.fixture(scope="module", params=["sim", "upstream"])
def soak(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> SoakResult:
    workdir = tmp_path_factory.mktemp(f"soak-{request.param}")
    if request.param == "sim":
        result = run_soak(workdir, Shape(tenants=20), duration_s=30)
    else:
        pace = ("--reasoning", "6", "--content", "14", "--delay", "0.004")
        with FakeUpstream(*pace) as one, FakeUpstream(*pace) as two:
            shape = Shape(tenants=20, upstreams=(one.url, two.url))
            result = run_soak(workdir, shape, duration_s=22)
    print("\n" + "\n".join(report(result)))
    return result


def test_every_request_has_one_verified_record_and_no_5xx(soak: SoakResult) -> None:
    assert soak.statuses[200] > 300, soak.statuses
    assert soak.server_errors == 0, soak.statuses
    assert soak.records == soak.requests  # hung-up and refused requests included
    assert "OK:" in soak.verify


def test_queue_bounds_hold(soak: SoakResult) -> None:
    assert soak.statuses[429] > 0, "the heavy tenants never reached their queue bound"
    assert 0 < soak.max_queued() <= soak.shape.max_queued_per_tenant


def test_memory_stays_flat(soak: SoakResult) -> None:
    # A leak of 5 KB per request would add about 10 MiB over the ~2,000 answers after warm-up.
    assert soak.growth("rss") < 10 * MIB, report(soak)


def test_file_descriptors_do_not_grow(soak: SoakResult) -> None:
    assert soak.hangups > 0
    assert soak.idle_before is not None and soak.idle_after is not None
    # Back to idle, but for the provider's pool of kept-alive upstream connections.
    assert soak.idle_after.fds - soak.idle_after.pooled <= soak.idle_before.fds + 3, report(soak)
    # The pool holds at most what ran at once: the in-flight ceiling of each upstream.
    ceiling = SchedulerConfig().inflight_ceiling
    assert soak.idle_after.pooled <= ceiling * len(soak.shape.upstreams), report(soak)
    clients = sum(soak.shape.clients(i) for i in range(soak.shape.tenants))
    assert max(s.fds for s in soak.samples) <= soak.idle_before.fds + clients + 10
