"""Shared fixtures and helpers for the end-to-end tests (real vLLM, real Ray).

Processes started by a test are recognised by an environment marker that every child
inherits (Ray's GCS, raylet and workers, the vLLM servers they start), so a test can assert
that nothing it started outlives it, on a machine where others run their own vLLM or Ray.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.tiny_reasoner import build_tiny_reasoner

MARK_ENV = "FAIRGATE_TEST_MARK"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny deterministic ``<think>`` model (built once, cached under ``.cache/``)."""
    return build_tiny_reasoner()


def new_mark() -> str:
    return uuid.uuid4().hex


def marked_env(mark: str, base: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ if base is None else base)
    env[MARK_ENV] = mark
    return env


def marked_processes(mark: str) -> list[psutil.Process]:
    """Live processes (other than this one) carrying ``mark`` in their environment."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error, OSError):
            if proc.status() != psutil.STATUS_ZOMBIE and _has_mark(proc.pid, mark):
                found.append(proc)
    return found


def _has_mark(pid: int, mark: str) -> bool:
    # Raw bytes, not psutil's environ(): a process that sets a long title (Ray's
    # "ray::DashboardAgent") overwrites the start of its environment block with zeros, and
    # psutil then sees an empty environment.
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return f"{MARK_ENV}={mark}".encode() in raw.split(b"\0")


def describe(processes: list[psutil.Process]) -> str:
    lines = []
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            lines.append(f"{proc.pid} {' '.join(proc.cmdline())[:160]}")
    return "\n".join(lines)


def wait_none_marked(mark: str, timeout_s: float = 30.0) -> None:
    """Fail (after killing them) if marked processes are still there after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    left = marked_processes(mark)
    while left and time.monotonic() < deadline:
        time.sleep(0.25)
        left = marked_processes(mark)
    if left:
        listing = describe(left)
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        pytest.fail(f"{len(left)} process(es) outlived the test:\n{listing}")


@contextlib.contextmanager
def marking_this_process() -> Iterator[str]:
    """Mark this process's environment, so that whatever it starts inherits the mark."""
    mark = new_mark()
    previous = os.environ.get(MARK_ENV)
    os.environ[MARK_ENV] = mark
    try:
        yield mark
    finally:
        if previous is None:
            os.environ.pop(MARK_ENV, None)
        else:
            os.environ[MARK_ENV] = previous


def memory_of(processes: list[psutil.Process]) -> dict[str, int]:
    """Summed RSS and PSS (shared pages split between sharers) of ``processes``, in bytes."""
    rss = pss = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            rss += info.rss
            pss += getattr(info, "pss", info.rss)
    return {"rss_bytes": rss, "pss_bytes": pss, "processes": len(processes)}


def wait_for(predicate: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.5)
