"""A short run of the gateway hot-path benchmark (``bench.gateway --smoke``): direct and
fairgate over the fast upstream, a few seconds, so that the benchmark cannot rot."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.gateway import report
from bench.gateway.run import main
from bench.gateway.upstream import LAST_WORD, TOKENS, stream_events


def test_upstream_answer_has_every_token_ids_and_usage() -> None:
    events = stream_events(with_usage=True)
    chunks = [json.loads(e[6:]) for e in events[:-1]]
    assert events[-1] == b"data: [DONE]\n\n"
    assert len(chunks) == TOKENS + 1
    assert chunks[0]["prompt_token_ids"] and chunks[0]["choices"][0]["delta"]["role"]
    assert all(len(c["choices"][0]["token_ids"]) == 1 for c in chunks[:-1])
    assert chunks[-1]["usage"]["completion_tokens"] == TOKENS
    assert LAST_WORD in json.dumps(chunks[-2])


@pytest.mark.timeout(150)
@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset pins the processes")
def test_smoke_run_measures_direct_and_fairgate(tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## Gateway hot path\n\nhand-written text\n")
    assert main(["--smoke", "--json", str(out), "--workdir", str(tmp_path / "work")]) == 0
    result = json.loads(out.read_text())
    rows = [r for r in result["rows"] if r["phase"] == "rates"]
    assert {r["target"] for r in rows} == {"direct", "fairgate"}
    for row in rows:
        assert row["sent"] > 0 and row["errors"] == 0, row
        assert 0 < row["ttfb_p50"] <= row["total_p50"]
    fairgate = [r for r in rows if r["target"] == "fairgate"]
    assert all(r["cpu_ms"] > 0 and r["rss_mb"] > 0 for r in fairgate)
    assert all(r["overhead_p50"] is not None for r in fairgate)  # x-fairgate-overhead-ms
    text = report.render(result)
    assert "| 10 | fairgate |" in text and "highest sustained" in text
    image = tmp_path / "gateway" / "latency.png"
    report.write(result, results=results, image=image)
    assert image.stat().st_size > 0
    written = results.read_text()
    assert "hand-written text" in written and written.count(report.BEGIN) == 1
    report.write(result, results=results, image=image)  # a second run replaces, never appends
    assert results.read_text().count(report.BEGIN) == 1
