"""An upstream process that goes quiet (before its response headers, before any token, or
mid-answer): the gateway's stall timeout (``guards.stall_timeout_s``) ends the request in
bounded time, with its record."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.checks import assert_settled
from tests.faults.tally import TALLY
from tests.faults.upstream import REASONING, ask, count_errors, faulty_pair

pytestmark = pytest.mark.timeout(60)
STALL_S = 1.0


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize(
    ("kind", "after"),
    [("hang", 0), ("stall", 0), ("stall", REASONING + 2)],
    ids=["before-headers", "before-output", "after-visible"],
)
def test_stalled_upstream_ends_in_bounded_time(
    tmp_path: Path, kind: str, after: int, stream: bool
) -> None:
    fault = ("--fault", kind, "--after", str(after), "--times", "1")
    guards = {"guards": {"stall_timeout_s": STALL_S}}
    with faulty_pair(tmp_path, *fault, top=guards) as server:
        answers = []
        stalled = None
        for index in range(8):
            began = time.monotonic()
            answers.append(ask(server, stream=stream, timeout=STALL_S * 10, content=f"q {index}"))
            if not answers[-1].done:
                stalled = answers[-1]
                break
        assert stalled is not None, "no request reached the stalled upstream"
        TALLY.fault("upstream stall")
        took = time.monotonic() - began
        assert STALL_S * 0.9 <= took < STALL_S * 5, f"the stalled request took {took:.1f} s"
        assert stalled.error is not None and stalled.error["code"] == "upstream_timeout"
        assert stalled.status == (200 if stream and after else 504)
        answers += [ask(server, stream=stream, content=f"later {n}") for n in range(3)]
        assert all(a.done for a in answers[-3:])
        count_errors(answers, expected={stalled.request_id})
        records = assert_settled(server, [a.request_id for a in answers])
    record = next(r for r in records if r["request_id"] == stalled.request_id)
    assert record["status"] == "timeout" and record["replica"] == "up-0"
    assert record["usage"]["completion_tokens"] == after
