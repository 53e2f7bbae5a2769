"""The ways to reach the two upstream engines that are measured side by side.

    direct                      client-side round robin straight to the upstreams (no gateway)
    fairgate dlpm/d2lpm         ``fairgate serve``, provider ``openai``, fair + prefix-aware
    fairgate fcfs/round_robin   the same binary with its baseline policies
    litellm                     LiteLLM proxy, the two upstreams as deployments of one model
    vllm-router round_robin     the Rust vLLM router
    vllm-router cache_aware     the same, with its prefix-tree (approximate cache) policy

Each gateway has ``start(context) -> Target`` and ``stop()``. ``start`` raises
``GatewayUnavailable`` with the reason (the peer is not installed, or its process died or
never became ready, with its log's last lines) so the benchmark can say why and go on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Protocol

import yaml

from bench.peers.engine import MODEL
from bench.peers.peer_env import ROOT, PeerEnv
from bench.peers.processes import Process, StartFailed, free_port

__all__ = [
    "Direct",
    "Fairgate",
    "Gateway",
    "GatewayUnavailable",
    "LiteLLM",
    "StartContext",
    "Target",
    "VllmRouter",
    "all_gateways",
    "fairgate_version",
]


class GatewayUnavailable(Exception):
    """This gateway cannot be measured in this run; the message says why."""


@dataclass(slots=True)
class StartContext:
    upstreams: list[str]  # base URLs without /v1
    tenants: list[str]
    workdir: Path
    peers: PeerEnv
    engine_cache_tokens: int = 100_000  # each upstream's prefix cache


@dataclass(slots=True)
class Target:
    """A running way in: clients send to ``base_urls`` (round robin when more than one)."""

    name: str
    version: str
    base_urls: list[str]
    keys: dict[str, str]  # tenant -> the API key its client sends
    tenant_aware: bool  # does the gateway itself know which tenant sent a request?


class Gateway(Protocol):
    name: str

    def start(self, context: StartContext) -> Target: ...

    def stop(self) -> None: ...


class Direct:
    def __init__(self, name: str = "direct") -> None:
        self.name = name

    def start(self, context: StartContext) -> Target:
        urls = [u + "/v1" for u in context.upstreams]
        keys = {t: "sk-direct" for t in context.tenants}
        return Target(self.name, "-", urls, keys, tenant_aware=False)

    def stop(self) -> None:
        pass


def fairgate_version() -> str:
    """The installed fairgate's version and this checkout's ``git describe``."""
    try:
        version = metadata.version("fairgate")
    except metadata.PackageNotFoundError:
        version = "?"
    git = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f"{version} (git {git.stdout.strip()})" if git.returncode == 0 else version


class _ProcessGateway:
    """A gateway that is one child process; subclasses build its argv and readiness check."""

    name: str
    ready_path: str
    ready_timeout_s: float = 60.0

    def __init__(self) -> None:
        self._process: Process | None = None

    def _workdir(self, context: StartContext) -> Path:
        workdir = context.workdir / self.name.replace(" ", "-").replace("/", "-")
        workdir.mkdir(parents=True, exist_ok=True)
        return workdir

    def _launch(self, context: StartContext, argv: list[str], env: dict[str, str] | None) -> int:
        port = free_port()
        workdir = self._workdir(context)
        argv = [a.replace("{port}", str(port)) for a in argv]
        process = Process(self.name, argv, workdir / "log.txt", env=env, cwd=workdir)
        self._process = process.start()
        try:
            process.wait_ready(f"http://127.0.0.1:{port}{self.ready_path}", self.ready_timeout_s)
        except StartFailed as failed:
            self.stop()
            raise GatewayUnavailable(str(failed)) from None
        return port

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None


class Fairgate(_ProcessGateway):
    ready_path = "/readyz"

    def __init__(self, policy: str, router: str) -> None:
        super().__init__()
        self.policy, self.router = policy, router
        self.name = f"fairgate {policy}/{router}"

    def config(self, context: StartContext, data_dir: Path) -> dict[str, object]:
        return {
            "data_dir": str(data_dir),
            "admin_key": "bench-admin",
            "tenants": [
                {"name": t, "weight": 1.0, "api_keys": [f"sk-bench-{t}"]} for t in context.tenants
            ],
            "models": [
                {
                    "name": MODEL,
                    "provider": "openai",
                    "endpoints": context.upstreams,
                    "reasoning": "visible",
                }
            ],
            "scheduler": {
                "policy": self.policy,
                "router": self.router,
                "inflight_initial": 4,  # the upstream engine's batch slots
                # the upstream's prefix cache, as an operator states a vLLM replica's KV cache:
                # an index far larger than the engine's cache believes evicted prefixes are
                # still there (measured: 0.64 Jain instead of 0.88, bench/RESULTS.md)
                "cache_tokens_per_replica": context.engine_cache_tokens,
            },
        }

    def start(self, context: StartContext) -> Target:
        workdir = self._workdir(context)
        config_path = workdir / "fairgate.yaml"
        config_path.write_text(yaml.safe_dump(self.config(context, workdir / "data")))
        script = Path(sys.executable).parent / "fairgate"
        if not script.exists():
            raise GatewayUnavailable(f"no 'fairgate' script next to {sys.executable}")
        argv = [str(script), "serve", "--config", str(config_path)]
        argv += ["--port", "{port}", "--log-level", "warning"]
        port = self._launch(context, argv, None)
        keys = {t: f"sk-bench-{t}" for t in context.tenants}
        url = f"http://127.0.0.1:{port}/v1"
        return Target(self.name, fairgate_version(), [url], keys, tenant_aware=True)


class LiteLLM(_ProcessGateway):
    name = "litellm"
    ready_path = "/health/liveliness"
    ready_timeout_s = 120.0  # imports take ~10 s on two cores
    master_key = "sk-litellm-bench"

    def start(self, context: StartContext) -> Target:
        version = context.peers.versions.get("litellm")
        if version is None:
            raise GatewayUnavailable(context.peers.problems.get("litellm", "not installed"))
        workdir = self._workdir(context)
        # Virtual keys per tenant need LiteLLM's database (PostgreSQL); without one there is a
        # single master key, so tenants are tagged only client-side (and in the ``user`` field).
        config = {
            "model_list": [
                {
                    "model_name": MODEL,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": f"{url}/v1",
                        "api_key": "sk-upstream",
                    },
                }
                for url in context.upstreams
            ],
            "router_settings": {"routing_strategy": "simple-shuffle", "num_retries": 0},
            "litellm_settings": {"drop_params": True, "request_timeout": 600},
            "general_settings": {"master_key": self.master_key},
        }
        config_path = workdir / "litellm.yaml"
        config_path.write_text(yaml.safe_dump(config))
        env = dict(os.environ)
        env.update(
            LITELLM_LOCAL_MODEL_COST_MAP="True",  # no fetch of the price list at start-up
            LITELLM_LOG="WARNING",  # no per-request access log (fairgate runs at warning too)
            LITELLM_TELEMETRY="False",
            NO_DOCS="True",
        )
        argv = [str(context.peers.bin("litellm")), "--config", str(config_path)]
        argv += ["--host", "127.0.0.1", "--port", "{port}"]
        port = self._launch(context, argv, env)
        keys = {t: self.master_key for t in context.tenants}
        url = f"http://127.0.0.1:{port}/v1"
        return Target(self.name, version, [url], keys, tenant_aware=False)


class VllmRouter(_ProcessGateway):
    ready_path = "/health"

    def __init__(self, policy: str) -> None:
        super().__init__()
        self.policy = policy
        self.name = f"vllm-router {policy}"

    def start(self, context: StartContext) -> Target:
        version = context.peers.versions.get("vllm-router")
        if version is None:
            raise GatewayUnavailable(context.peers.problems.get("vllm-router", "not installed"))
        argv = [str(context.peers.bin("vllm-router")), "--host", "127.0.0.1", "--port", "{port}"]
        argv += ["--worker-urls", *context.upstreams, "--policy", self.policy]
        argv += ["--log-level", "warning"]
        # its metrics port defaults to 29000: a second vllm-router on the machine (another
        # run) made it panic at start-up, so each run gets a free one
        argv += ["--prometheus-port", str(free_port())]
        port = self._launch(context, argv, None)
        keys = {t: "sk-none" for t in context.tenants}
        url = f"http://127.0.0.1:{port}/v1"
        return Target(self.name, version, [url], keys, tenant_aware=False)


def all_gateways() -> list[Gateway]:
    """Every gateway in run order; ``direct`` once more at the end as a control: when its two
    rows differ, the machine's conditions changed during the run."""
    return [
        Direct(),
        Fairgate("dlpm", "d2lpm"),
        Fairgate("fcfs", "round_robin"),
        LiteLLM(),
        VllmRouter("round_robin"),
        VllmRouter("cache_aware"),
        Direct("direct (control)"),
    ]
