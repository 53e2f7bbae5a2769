"""The public API: exactly what __all__ says, with the signatures the gateway calls."""

import inspect
import types

from fairgate import scheduler

GATEWAY_NEEDS = {
    "Scheduler",
    "SchedulerConfig",
    "Job",
    "Dispatch",
    "SchedulerStats",
    "TenantStats",
    "ReplicaStats",
    "SchedulerError",
    "QueueFull",
    "NoReplica",
    "UnknownJob",
}


def test_all_is_exactly_the_public_namespace():
    public = {
        name
        for name, value in vars(scheduler).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(scheduler.__all__)
    assert sorted(scheduler.__all__) == scheduler.__all__
    assert set(scheduler.__all__) >= GATEWAY_NEEDS


def test_exported_members_say_they_come_from_the_scheduler():
    for name in scheduler.__all__:
        assert getattr(scheduler, name).__module__.startswith("fairgate.scheduler.")


def params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_the_calls_the_gateway_makes():
    s = scheduler.Scheduler
    assert params(s.set_tenant) == ["self", "name", "weight"]
    assert params(s.add_replica) == ["self", "replica_id", "model", "cache_tokens"]
    assert params(s.remove_replica) == ["self", "replica_id", "now"]
    assert params(s.set_replica_health) == ["self", "replica_id", "healthy", "now"]
    assert params(s.set_inflight_limit) == ["self", "replica_id", "limit"]
    assert params(s.arrive) == ["self", "job", "now"]
    assert params(s.admit) == ["self", "now"]
    assert params(s.first_token) == ["self", "job_id", "cached_tokens", "now"]
    assert params(s.tokens) == ["self", "job_id", "n", "now"]
    assert params(s.finish) == ["self", "job_id", "now"]
    assert params(s.cancel) == ["self", "job_id", "now"]
    assert params(s.stats) == ["self"]
    assert params(scheduler.Job) == [
        "job_id",
        "tenant",
        "model",
        "prompt",
        "max_tokens",
        "namespace",
        "exclude",
    ]
    assert params(scheduler.Dispatch) == ["job_id", "replica_id"]
    assert params(scheduler.QueueFull) == ["tenant", "retry_after_s"]
    assert params(scheduler.NoReplica) == ["model"]
    config = params(scheduler.SchedulerConfig)
    assert config[:10] == [
        "policy",
        "router",
        "quantum",
        "replica_quantum",
        "prompt_weight",
        "completion_weight",
        "cached_prompt_weight",
        "inflight_initial",
        "inflight_floor",
        "inflight_ceiling",
    ]
