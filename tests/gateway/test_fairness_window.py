"""Jain's index over a sliding window of weighted service."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fairgate.gateway.fairness_window import FairnessWindow, jain

W1 = {"a": 1.0, "b": 1.0, "c": 1.0}


def naive_jain(xs: list[float]) -> float:
    n = len(xs)
    mean = sum(xs) / n
    mean_square = sum(x * x for x in xs) / n
    return mean * mean / mean_square


def test_jain_extremes() -> None:
    assert jain([5, 5, 5]) == pytest.approx(1.0)
    assert jain([9, 0, 0]) == pytest.approx(1 / 3)
    assert jain([]) == 1.0 and jain([0, 0]) == 1.0


SERVICE = st.one_of(st.just(0.0), st.floats(1e-3, 1e6))


@given(st.lists(SERVICE, min_size=1, max_size=20).filter(any))
def test_jain_matches_the_textbook_form_and_is_bounded(xs: list[float]) -> None:
    value = jain(xs)
    assert value == pytest.approx(naive_jain(xs))
    assert 1 / len(xs) - 1e-9 <= value <= 1 + 1e-9


def test_equal_service_is_fair_and_one_tenant_taking_all_is_not() -> None:
    window = FairnessWindow(60)
    window.observe(0, {"a": 0, "b": 0, "c": 0}, W1)
    window.observe(10, {"a": 100, "b": 100, "c": 100}, W1)
    assert window.index() == pytest.approx(1.0)
    window = FairnessWindow(60)
    window.observe(0, {"a": 0, "b": 0, "c": 0}, W1)
    window.observe(10, {"a": 300, "b": 0, "c": 0}, W1, busy=["b", "c"])
    assert window.shares() == {"a": 300, "b": 0, "c": 0}  # starved tenants count as 0
    assert window.index() == pytest.approx(1 / 3)


def test_idle_tenants_do_not_count_and_weights_normalise() -> None:
    window = FairnessWindow(60)
    weights = {"a": 2.0, "b": 1.0, "c": 1.0}
    window.observe(0, {"a": 0, "b": 0, "c": 0}, weights)
    window.observe(5, {"a": 200, "b": 100, "c": 0}, weights)  # c idle: not active
    assert window.shares() == {"a": 100, "b": 100}
    assert window.index() == pytest.approx(1.0)


def test_the_window_slides() -> None:
    window = FairnessWindow(10, resolution_s=1)
    window.observe(0, {"a": 0, "b": 0}, W1)
    window.observe(5, {"a": 500, "b": 0}, W1, busy=["b"])  # a served, b waiting
    assert window.index() == pytest.approx(0.5)
    for t in range(6, 30):
        k = t - 5
        window.observe(t, {"a": 500 + 10 * k, "b": 10 * k}, W1, busy=["a", "b"])
    # Only the last 10 s count: both got 100.
    assert window.shares() == {"a": pytest.approx(100), "b": pytest.approx(100)}
    assert window.index() == pytest.approx(1.0)


def test_frequent_observations_are_merged() -> None:
    window = FairnessWindow(60, resolution_s=1)
    for i in range(10_000):  # a scrape every 10 ms for 100 s
        window.observe(i / 100, {"a": float(i), "b": float(i)}, W1)
    assert len(window._samples) <= 62
    assert window.shares() == {"a": pytest.approx(6000, abs=100), "b": pytest.approx(6000, abs=100)}


def test_nothing_to_compare_is_fair() -> None:
    window = FairnessWindow(60)
    assert window.index() == 1.0
    window.observe(0, {"a": 0}, W1, busy=["a"])
    assert window.index() == 1.0
    with pytest.raises(ValueError, match="window_s"):
        FairnessWindow(0)
