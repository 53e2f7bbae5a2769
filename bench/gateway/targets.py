"""The ways to the upstream measured side by side, each proxy pinned to its own core.

    direct        the load generator talks to the upstream itself (the reference)
    fairgate      ``fairgate serve``: provider ``openai``, DLPM/D²LPM scheduling, metering,
                  Merkle commitment, Ed25519-signed SQLite ledger (synchronous=FULL)
    fairgate sync=background   the same with ``ledger.sync: background`` (fsync after the
                  receipt, off the response path)
    litellm       LiteLLM proxy, one deployment, one master key
    vllm-router   the Rust vLLM router, ``--policy round_robin``, one worker

Each proxy runs under ``taskset -c CORE`` in its own process group (``bench.peers.processes``);
``cpu_seconds`` and ``rss_bytes`` add up every process in that group.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench.gateway.upstream import MODEL
from bench.peers.gateways import fairgate_version
from bench.peers.peer_env import PeerEnv
from bench.peers.processes import Process, StartFailed, free_port

__all__ = ["Target", "TargetUnavailable", "make_targets"]

TENANT_KEY = "sk-bench-a"
FAIRGATE_BACKGROUND = "fairgate sync=background"  # ledger.sync: background


class TargetUnavailable(Exception):
    """This target cannot be measured in this run; the message says why."""


@dataclass(slots=True)
class Target:
    name: str
    version: str = "-"
    url: str = ""  # the .../v1 base URL the load generator sends to
    key: str = "sk-none"
    process: Process | None = None
    pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def _group(self) -> list[psutil.Process]:
        if self.pid is None:
            return []
        members = []
        for proc in psutil.process_iter():
            try:
                if os.getpgid(proc.pid) == self.pid:
                    members.append(proc)
            except (ProcessLookupError, psutil.Error):
                continue
        return members

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self._group():
            try:
                times = proc.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
        return total

    def rss_bytes(self) -> int:
        total = 0
        for proc in self._group():
            try:
                total += proc.memory_info().rss
            except psutil.Error:
                continue
        return total

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def _launch(
    target: Target,
    argv: list[str],
    workdir: Path,
    ready: str,
    core: int,
    env: dict[str, str] | None = None,
) -> None:
    port = free_port()
    argv = ["taskset", "-c", str(core), *(a.replace("{port}", str(port)) for a in argv)]
    process = Process(target.name, argv, workdir / "log.txt", cwd=workdir, env=env).start()
    target.process = process
    try:
        process.wait_ready(f"http://127.0.0.1:{port}{ready}", 120.0)
    except StartFailed as failed:
        process.stop()
        raise TargetUnavailable(str(failed)) from None
    assert process._proc is not None
    target.pid = process._proc.pid
    target.url = f"http://127.0.0.1:{port}/v1"


def fairgate_config(
    upstream: str, data_dir: Path, embeddings: str = "off", sync: str = "commit"
) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "admin_key": "bench-admin",
        "tenants": [{"name": "a", "weight": 1.0, "api_keys": [TENANT_KEY]}],
        "models": [
            {"name": MODEL, "provider": "openai", "endpoints": [upstream], "reasoning": "visible"}
        ],
        "audit": {"embeddings": embeddings},
        **({"ledger": {"sync": sync}} if sync != "commit" else {}),  # older trees lack it
    }


def start_fairgate(
    name: str,
    upstream: str,
    workdir: Path,
    core: int,
    embeddings: str = "off",
    sync: str = "commit",
    tree: Path | None = None,
) -> Target:
    """``tree``: run the fairgate of another checkout (``git archive REV | tar -x -C DIR``)
    with this venv, to put a before and an after side by side in one run."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "fairgate.yaml"
    settings = fairgate_config(upstream, workdir / "data", embeddings, sync)
    config.write_text(yaml.safe_dump(settings))
    argv = [sys.executable, "-m", "fairgate.gateway.cli", "serve", "--config", str(config)]
    env = None
    version = fairgate_version()
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
        version = f"the tree at {tree}"
    target = Target(name, version, key=TENANT_KEY)
    argv += ["--port", "{port}", "--log-level", "warning"]
    _launch(target, argv, workdir, "/readyz", core, env=env)
    return target


def start_litellm(upstream: str, workdir: Path, core: int, peers: PeerEnv) -> Target:
    version = peers.versions.get("litellm")
    if version is None:
        raise TargetUnavailable(peers.problems.get("litellm", "not installed"))
    workdir.mkdir(parents=True, exist_ok=True)
    deployment = {"model": f"openai/{MODEL}", "api_base": f"{upstream}/v1", "api_key": "sk-up"}
    config = {
        "model_list": [{"model_name": MODEL, "litellm_params": deployment}],
        "router_settings": {"num_retries": 0},
        "litellm_settings": {"drop_params": True, "request_timeout": 600},
        "general_settings": {"master_key": "sk-litellm-bench"},
    }
    path = workdir / "litellm.yaml"
    path.write_text(yaml.safe_dump(config))
    env = dict(os.environ)
    env.update(
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="WARNING",
        LITELLM_TELEMETRY="False",
        NO_DOCS="True",
    )
    argv = [str(peers.bin("litellm")), "--config", str(path), "--host", "127.0.0.1"]
    target = Target("litellm", version, key="sk-litellm-bench")
    _launch(target, [*argv, "--port", "{port}"], workdir, "/health/liveliness", core, env=env)
    return target


def start_router(upstream: str, workdir: Path, core: int, peers: PeerEnv) -> Target:
    version = peers.versions.get("vllm-router")
    if version is None:
        raise TargetUnavailable(peers.problems.get("vllm-router", "not installed"))
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [str(peers.bin("vllm-router")), "--host", "127.0.0.1", "--port", "{port}"]
    argv += ["--worker-urls", upstream, "--policy", "round_robin", "--log-level", "warning"]
    # its metrics port defaults to 29000, which another vllm-router on the machine may hold
    argv += ["--prometheus-port", str(free_port())]
    target = Target("vllm-router", version)
    target.notes.append("no metering, no ledger, no tenants")
    _launch(target, argv, workdir, "/health", core)
    return target


def make_targets(
    names: list[str],
    upstream: str,
    workdir: Path,
    core: int,
    peers: PeerEnv,
    trees: dict[str, Path] | None = None,
) -> tuple[list[Target], dict[str, str]]:
    """Start every named target; those that cannot start are returned with the reason."""
    if shutil.which("taskset") is None:
        raise TargetUnavailable("taskset (util-linux) is needed to pin the proxies")
    started: list[Target] = []
    missing: dict[str, str] = {}
    for name in names:
        try:
            if trees and name in trees:
                where = workdir / name.replace(" ", "-")
                started.append(start_fairgate(name, upstream, where, core, tree=trees[name]))
            elif name == "direct":
                started.append(Target("direct", url=f"{upstream}/v1"))
            elif name == "fairgate":
                started.append(start_fairgate(name, upstream, workdir / name, core))
            elif name == FAIRGATE_BACKGROUND:
                where = workdir / "fairgate-background"
                started.append(start_fairgate(name, upstream, where, core, sync="background"))
            elif name == "fairgate+embeddings":
                started.append(start_fairgate(name, upstream, workdir / name, core, "auto"))
            elif name == "litellm":
                started.append(start_litellm(upstream, workdir / name, core, peers))
            elif name == "vllm-router":
                started.append(start_router(upstream, workdir / name, core, peers))
            else:
                raise TargetUnavailable(f"unknown target {name!r}")
        except TargetUnavailable as why:
            missing[name] = str(why)
    return started, missing
