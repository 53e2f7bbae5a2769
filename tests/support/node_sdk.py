"""The official OpenAI Node SDK, for tests: installed once with npm under ``.cache/``.

``openai`` 6.x is pinned because 7.x declares Node.js 22 and the machines have Node.js 20.
Missing node or npm skip a test on a developer's machine and fail it in CI (``$CI`` set).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

VERSION = "6.30.1"
ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / ".cache" / f"node-openai-{VERSION}"
SCRIPTS = Path(__file__).with_name("node")


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        message = f"{name} not installed (Node.js 20 with npm)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def install() -> Path:
    """The folder whose ``node_modules`` holds the pinned SDK."""
    _tool("node")
    npm = _tool("npm")
    if not (PREFIX / "node_modules" / "openai" / "package.json").exists():
        PREFIX.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(PREFIX),
                f"openai@{VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    return PREFIX


def run_script(name: str, *args: str, timeout: float = 90) -> dict[str, Any]:
    """Run ``tests/support/node/<name>`` beside the SDK (ESM resolves packages from the
    script's folder) and return the one JSON line it prints."""
    prefix = install()
    script = prefix / name
    shutil.copyfile(SCRIPTS / name, script)
    done = subprocess.run(
        [_tool("node"), str(script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"node {name} failed:\n{done.stderr[-4000:]}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
