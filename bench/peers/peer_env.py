"""The peers' own virtual environment, apart from fairgate's.

LiteLLM and vllm-router pin versions that conflict with fairgate's (FastAPI among them), so they
live in ``.cache/peers-venv`` (gitignored), made with ``python3.11 -m venv`` and filled with
``pip install`` on first use. Each package is installed on its own, so one that fails leaves the
other usable; a failure is reported with pip's last lines, never hidden.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PACKAGES", "PeerEnv", "ensure_peer_env"]

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_VENV = ROOT / ".cache" / "peers-venv"
# distribution to check -> requirement to install
PACKAGES = {"litellm": "litellm[proxy]", "vllm-router": "vllm-router"}


@dataclass(slots=True)
class PeerEnv:
    venv: Path
    versions: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def _tail(text: str, lines: int = 6) -> str:
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _installed(python: Path, dist: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({dist!r}))"
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_peer_env(
    venv: Path = DEFAULT_VENV, *, install: bool = True, log: Callable[[str], None] = print
) -> PeerEnv:
    env = PeerEnv(venv)
    python = venv / "bin" / "python"
    if not python.exists():
        if not install:
            env.problems = {
                d: f"no peers venv at {venv} (run without --no-install)" for d in PACKAGES
            }
            return env
        creator = shutil.which("python3.11")
        if creator is None:
            env.problems = {d: "python3.11 not found to create the peers venv" for d in PACKAGES}
            return env
        log(f"creating the peers venv at {venv} ...")
        made = subprocess.run(
            [creator, "-m", "venv", str(venv)], capture_output=True, text=True, check=False
        )
        if made.returncode != 0:
            env.problems = {d: f"venv failed: {_tail(made.stderr)}" for d in PACKAGES}
            return env
    for dist, requirement in PACKAGES.items():
        version = _installed(python, dist)
        if version is None and install:
            log(f"pip install {requirement} into {venv} (first run only; takes a minute) ...")
            result = subprocess.run(
                [str(python), "-m", "pip", "install", "-q", requirement],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                env.problems[dist] = f"pip install {requirement} failed: {_tail(result.stderr)}"
                continue
            version = _installed(python, dist)
        if version is None:
            env.problems.setdefault(dist, f"{dist} is not installed in {venv}")
        else:
            env.versions[dist] = version
    return env
