import pytest

from fairgate.scheduler import ConfigError, Policy, RouterKind, SchedulerConfig


def test_defaults_are_the_documented_ones():
    cfg = SchedulerConfig()
    assert (cfg.policy_kind, cfg.router_kind) == (Policy.DLPM, RouterKind.D2LPM)
    assert (cfg.prompt_weight, cfg.completion_weight) == (1.0, 2.0)
    assert (cfg.inflight_initial, cfg.inflight_ceiling, cfg.max_queued_per_tenant) == (4, 64, 256)
    assert cfg.cache_tokens_per_replica == 100_000
    assert (cfg.quantum_jobs, cfg.locality_tolerance, cfg.locality_slack) == (1.0, 0.25, None)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("policy", "wfq"),
        ("router", "random"),
        ("quantum", 0),
        ("quantum", float("inf")),
        ("replica_quantum", -1.0),
        ("prompt_weight", -0.5),
        ("completion_weight", float("nan")),
        ("inflight_floor", 0),
        ("max_queued_per_tenant", 1.5),
        ("cache_tokens_per_replica", -1),
        ("balance_rel_threshold", 0.9),
        ("cache_threshold", 1.5),
        ("quantum", "big"),
        ("inflight_initial", True),
        ("quantum_jobs", -1.0),
        ("locality_tolerance", float("nan")),
        ("locality_slack", -1.0),
    ],
)
def test_bad_values_name_their_key(key, value):
    with pytest.raises(ConfigError) as err:
        SchedulerConfig(**{key: value})
    assert err.value.key == key
    assert key in str(err.value)


def test_zero_prices_are_allowed():
    SchedulerConfig(prompt_weight=0.0, completion_weight=0.0)
