"""Upstream processes that fail: one dies mid-stream, one sends malformed SSE, one closes its
body cleanly mid-answer (no finish_reason, no [DONE]), one refuses with a 503. Before any
visible output (hidden reasoning included) the request is retried on the healthy replica and
the client never knows; after visible output the answer ends with an upstream error and its
record bills what was generated. Either way: one record per request, a chain that verifies."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.checks import assert_settled
from tests.faults.tally import TALLY
from tests.faults.upstream import (
    CONTENT,
    HEALTHY_ANSWER,
    REASONING,
    Answer,
    ask,
    count_errors,
    faulty_pair,
    retries,
)
from tests.support.gateway_server import GatewayServer

pytestmark = pytest.mark.timeout(60)


def _until_hit(server: GatewayServer, stream: bool, tries: int = 8) -> tuple[list[Answer], Answer]:
    """Send requests one by one until one reaches the faulty upstream."""
    answers: list[Answer] = []
    for index in range(tries):
        before = retries(server)
        answer = ask(server, stream=stream, content=f"question {index}")
        answers.append(answer)
        if retries(server) > before or answer.text != HEALTHY_ANSWER or not answer.done:
            return answers, answer
    raise AssertionError("no request reached the faulty upstream")


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("fault", ["die", "malformed", "truncate"])
@pytest.mark.parametrize("after", [0, REASONING - 1], ids=["before-any-token", "after-hidden"])
def test_fault_before_visible_output_is_retried(
    tmp_path: Path, fault: str, after: int, stream: bool
) -> None:
    with faulty_pair(tmp_path, "--fault", fault, "--after", str(after)) as server:
        answers, hit = _until_hit(server, stream)
        TALLY.fault(f"upstream {fault} before visible output")
        answers += [ask(server, stream=stream, content=f"later {n}") for n in range(3)]
        count_errors(answers)
        for answer in answers:
            assert answer.status == 200 and answer.error is None, answer
            assert answer.done and answer.text == HEALTHY_ANSWER
        assert retries(server) == 1
        if fault == "die":
            assert not server.faulty.alive  # type: ignore[attr-defined]
        records = {
            r["request_id"]: r for r in assert_settled(server, [a.request_id for a in answers])
        }
    record = records[hit.request_id]
    assert record["status"] == "ok" and record["replica"] == "up-1"
    # Billed for the answer served, not for the dead attempt's hidden tokens.
    assert record["usage"]["completion_tokens"] == REASONING + CONTENT
    assert record["usage"]["completion_tokens_details"]["reasoning_tokens"] == REASONING
    assert record["commitment"]["leaves"] == REASONING


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
@pytest.mark.parametrize("fault", ["die", "malformed", "truncate"])
def test_fault_after_visible_output_ends_with_an_error(
    tmp_path: Path, fault: str, stream: bool
) -> None:
    shown = 3
    with faulty_pair(
        tmp_path, "--fault", fault, "--after", str(REASONING + shown), "--times", "1"
    ) as server:
        answers, hit = _until_hit(server, stream)
        TALLY.fault(f"upstream {fault} after visible output")
        answers += [ask(server, stream=stream, content=f"later {n}") for n in range(3)]
        count_errors(answers, expected={hit.request_id})
        assert hit.error is not None and hit.error["code"] == "upstream_error"
        assert "Traceback" not in str(hit.error)
        if stream:  # the visible part went out; the stream ends with the error, no [DONE]
            # A dying process's last bytes may be lost with its connection (aiohttp drops what
            # it buffered when the read fails), so the client saw 1..shown visible tokens.
            assert hit.status == 200 and not hit.done
            assert hit.text in [" alpha" * n for n in range(1, shown + 1)], hit.text
        else:
            assert hit.status == 502
        for answer in answers[:-3]:
            if answer is not hit:
                assert answer.done and answer.text == HEALTHY_ANSWER
        for answer in answers[-3:]:  # the failed replica is out of rotation or back healthy
            assert answer.status == 200 and answer.done and answer.text == HEALTHY_ANSWER
        records = {
            r["request_id"]: r for r in assert_settled(server, [a.request_id for a in answers])
        }
    record = records[hit.request_id]
    assert record["status"] == "replica_died" and record["status_code"] == 502
    assert record["replica"] == "up-0"
    billed = record["usage"]["completion_tokens"]
    if stream:  # billed exactly what the client was sent
        assert billed == REASONING + hit.text.count("alpha")
    assert REASONING < billed <= REASONING + shown
    assert record["usage"]["completion_tokens_details"]["reasoning_tokens"] == REASONING


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_an_upstream_that_refuses_is_retried(tmp_path: Path, stream: bool) -> None:
    with faulty_pair(tmp_path, "--fault", "refuse", "--times", "1") as server:
        answers, hit = _until_hit(server, stream)
        TALLY.fault("upstream 503 before the stream")
        count_errors(answers)
        assert all(a.status == 200 and a.done and a.text == HEALTHY_ANSWER for a in answers)
        records = assert_settled(server, [a.request_id for a in answers])
    assert next(r for r in records if r["request_id"] == hit.request_id)["replica"] == "up-1"
