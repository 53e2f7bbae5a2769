"""Faults in a model's files end ``fairgate serve`` at once (exit 2, one line each), instead
of leaving a gateway that is unready forever.

Checked before anything starts: a local model folder that is missing, has no readable
``config.json``, or whose tokenizer does not load, and a tokenizer path that is missing. Hub
ids (``org/name``) are left to the engine, which may download them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fairgate.gateway.config import Config, ConfigError, ModelConfig
from fairgate.metering.tokens import load_tokenizer


def is_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or Path(source).exists()


def missing(source: str) -> bool:
    return is_local(source) and not Path(source).expanduser().exists()


def model_faults(model: ModelConfig, load: Callable[[str], Any] = load_tokenizer) -> list[str]:
    where = f"models.{model.name}"
    faults: list[str] = []
    if model.model and is_local(model.model):
        faults += folder_faults(Path(model.model).expanduser(), f"{where}.model")
    if model.tokenizer and missing(model.tokenizer):
        faults.append(f"{where}.tokenizer: {model.tokenizer} does not exist")
    if faults:
        return faults
    tokenizer = model.tokenizer or (model.model if model.provider == "vllm" else None)
    if tokenizer and is_local(tokenizer):
        try:
            load(str(Path(tokenizer).expanduser()))
        except Exception as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            faults.append(
                f"{where}: the tokenizer in {tokenizer} does not load "
                f"({type(error).__name__}: {first[:200]})"
            )
    return faults


def folder_faults(folder: Path, where: str) -> list[str]:
    if not folder.is_dir():
        return [f"{where}: model folder {folder} does not exist"]
    config = folder / "config.json"
    try:
        data = json.loads(config.read_text())
    except FileNotFoundError:
        return [f"{where}: {folder} has no config.json"]
    except (OSError, ValueError) as error:
        return [f"{where}: {config} is not valid JSON ({error})"]
    if not isinstance(data, dict) or not (data.get("model_type") or data.get("architectures")):
        return [f"{where}: {config} names no model_type or architectures"]
    return []


def check_models(config: Config) -> None:
    faults = [fault for model in config.models for fault in model_faults(model)]
    if faults:
        raise ConfigError("\n".join(faults))
