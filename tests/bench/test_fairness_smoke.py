"""CI smoke runs of the fairness benchmarks (short windows): they run, and FCFS loses the
simulated flood to DLPM/D²LPM in the same run."""

from __future__ import annotations

import random

import pytest

from bench.fairness.__main__ import FLOOD_ENGINE, WORKLOADS, main, run
from bench.sim.paper_workloads import flood


@pytest.mark.timeout(120)
def test_every_workload_runs_quick(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    for name in WORKLOADS:
        assert f"== {name}:" in out


def test_simulated_flood_fcfs_loses_and_dlpm_keeps_locality() -> None:
    workload = flood(random.Random(1), duration=20)
    fcfs = run(workload, "fcfs", "round_robin", FLOOD_ENGINE, 2)
    fair = run(workload, "dlpm", "d2lpm", FLOOD_ENGINE, 2)
    assert fcfs.generated_share("light1") < 0.4
    assert fair.generated_share("light1") > 2 * fcfs.generated_share("light1")
    assert fair.throughput >= 0.9 * fcfs.throughput
    assert fair.hit_ratio >= fcfs.hit_ratio


@pytest.mark.timeout(120)
def test_load_sweep_runs_quick(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.fairness import sweep

    assert sweep.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "capacity" in out and "Preble-like / D²LPM" in out
    assert out.count(" 70% ") == len(sweep.COMBOS)
