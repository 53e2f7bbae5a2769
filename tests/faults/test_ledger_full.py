"""The ledger's disk fills up under a real ``fairgate serve``: a file-size limit on the
process (RLIMIT_FSIZE, no root needed) makes SQLite's writes fail as on a full disk. The
gateway must then refuse new work with 503 instead of serving requests it cannot bill, and
take work again once the ledger can write."""

from __future__ import annotations

import resource
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faults.process import GatewayProcess, exported_records, free_port, metric_total
from tests.faults.tally import TALLY

pytestmark = pytest.mark.timeout(120)
LIMIT_BYTES = 384 * 1024


def _small_files() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.RLIM_INFINITY))


def _ask(url: str, index: int) -> dict[str, Any]:
    body = {
        "model": "sim",
        "messages": [{"role": "user", "content": f"question {index}"}],
        "stream": index % 2 == 1,
    }
    headers = {"Authorization": "Bearer sk-alice"}
    TALLY.requests += 1
    with (
        httpx.Client(base_url=url, headers=headers, timeout=20) as http,
        http.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        text = response.read().decode()
    answer: dict[str, Any] = {"status": response.status_code, "text": text}
    answer["receipt"] = '"receipt"' in text
    answer["refused"] = response.status_code == 503 and "ledger_unavailable" in text
    return answer


def test_full_ledger_disk_refuses_work_with_503(tmp_path: Path) -> None:
    from tests.faults.process import write_config

    config = write_config(tmp_path)
    with GatewayProcess(config, free_port(), preexec=_small_files) as gateway:
        answers = []
        for index in range(3000):
            answers.append(_ask(gateway.url, index))
            if answers[-1]["status"] != 200 or not answers[-1]["receipt"]:
                break
        TALLY.fault("ledger disk full")
        served_before = len(answers) - 1
        assert served_before > 5, "the ledger was full before the test began"
        # The request that met the full disk: not served without its record.
        met = answers[-1]
        assert met["status"] in (200, 503) and "Traceback" not in met["text"], met
        assert met["status"] == 503 or '"error"' in met["text"], met
        refused = [_ask(gateway.url, 10_000 + n) for n in range(6)]
        assert all(a["refused"] and not a["receipt"] for a in refused), refused
        TALLY.expected_errors += len(refused) + 1

        resource.prlimit(gateway.pid, resource.RLIMIT_FSIZE, (-1, -1))  # space again
        back: list[dict[str, Any]] = []
        deadline = time.monotonic() + 20
        while not (back and back[-1]["status"] == 200) and time.monotonic() < deadline:
            back.append(_ask(gateway.url, 20_000 + len(back)))
        assert back[-1]["status"] == 200 and back[-1]["receipt"], back[-1]
        assert len(back) <= 2, "the gateway needed more than one refusal to notice the space"
        TALLY.expected_errors += len(back) - 1
        appended = metric_total(gateway.url, "fairgate_ledger_records_total")
        finished = metric_total(gateway.url, "fairgate_requests_total")
        assert metric_total(gateway.url, "fairgate_ledger_append_failures_total") >= 1
        gateway.stop()
        assert "Traceback" not in "".join(gateway.log), "".join(gateway.log)[-3000:]

    records = exported_records(config, tmp_path)
    TALLY.records_verified += len(records)
    served = [a for a in answers[:served_before] + back if a["status"] == 200]
    assert all(a["receipt"] for a in served), "a request was served without its receipt"
    oks = [r for r in records if r["status"] == "ok"]
    assert len(oks) == len(served)
    assert appended == finished == len(records)
