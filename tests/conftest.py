"""Suite-wide settings: time limits for the slow tests, and the torch guard."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from fairgate.replicas.torch_guard import hide_broken_extensions

# A test on real engines starts vLLM (30-60 s on 2 cores, more under load) and may wait for
# restarts; a hang still fails, with a traceback, instead of holding CI.
E2E_TIMEOUT_S = 900

# The tests import transformers and vLLM in this process, as the engines do in theirs.
hide_broken_extensions()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("e2e") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(E2E_TIMEOUT_S))


@pytest.fixture(autouse=True)
def _cores_kept() -> Iterator[None]:
    """Fails a test that leaves this process pinned to fewer cores: Ray, the engines and every
    later subprocess inherit the affinity, and one bench run in-process once left the whole
    e2e half of the suite on one core."""
    cores = os.sched_getaffinity(0)
    yield
    left = os.sched_getaffinity(0)
    if left != cores:
        os.sched_setaffinity(0, cores)
        pytest.fail(f"the test left this process on cores {sorted(left)}, not {sorted(cores)}")
