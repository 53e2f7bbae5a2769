"""What every fault test checks afterwards: no hung request, exactly one ledger record per
request, a chain that verifies, and metrics that agree with the ledger."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

from fairgate.metering.export import jsonl_line
from fairgate.metering.verify import verify_export
from tests.faults.tally import TALLY
from tests.support.gateway_server import GatewayServer


def wait_for_records(
    server: GatewayServer, request_ids: Iterable[str], timeout: float = 15
) -> None:
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted <= {r["request_id"] for r in server.records()}:
            return
        time.sleep(0.05)


def assert_settled(server: GatewayServer, request_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Every request id has exactly one record; the chain verifies; the counters agree with
    the ledger; nothing is left queued or running. Returns the requests' records."""
    ids = list(request_ids)
    assert len(ids) == len(set(ids)), "a request id was handed out twice"
    wait_for_records(server, ids)
    records = server.records()
    per_request = Counter(r["request_id"] for r in records)
    assert all(n == 1 for n in per_request.values()), "a request has two records"
    missing = [i for i in ids if per_request[i] != 1]
    assert not missing, f"{len(missing)} request(s) without a record: {missing[:3]}"
    report = verify_export(
        (jsonl_line(r) for r in records), server.runtime.recorder.keyring.public_keys
    )
    assert report.ok, report.summary()
    assert report.records == len(records)
    _assert_metrics_agree(server, records)
    _assert_idle(server)
    TALLY.records_verified += len(records)
    return [r for r in records if r["request_id"] in set(ids)]


def _assert_metrics_agree(
    server: GatewayServer, records: list[dict[str, Any]], timeout: float = 5
) -> None:
    """The counters catch up with the ledger: a record is readable once the writer thread has
    committed it, a moment before its request's coroutine resumes and counts it."""
    deadline = time.monotonic() + timeout
    while True:
        wrong = _metric_disagreements(server, records)
        if not wrong or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not wrong, "; ".join(wrong)


def _metric_disagreements(server: GatewayServer, records: list[dict[str, Any]]) -> list[str]:
    registry = server.runtime.metrics.registry
    wrong = []
    for status, count in Counter(r["status"] for r in records).items():
        appended = registry.get_sample_value("fairgate_ledger_records_total", {"status": status})
        if appended != count:
            wrong.append(f"ledger_records{{status={status}}} {appended} != {count}")
    finished = sum(
        sample.value
        for metric in registry.collect()
        if metric.name == "fairgate_requests"
        for sample in metric.samples
        if sample.name == "fairgate_requests_total"
    )
    if finished != len(records):
        wrong.append(f"fairgate_requests_total {finished} != {len(records)}")
    return wrong


def _assert_idle(server: GatewayServer, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        stats = server.runtime.dispatcher.scheduler.stats()
        busy = {
            r.replica_id: (r.queued, r.inflight)
            for r in stats.replicas.values()
            if r.queued or r.inflight
        }
        if not busy:
            return
        assert time.monotonic() < deadline, f"work left behind in the scheduler: {busy}"
        time.sleep(0.05)
