"""A model whose files are broken ends `fairgate serve` at once, with exit 2 and the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fairgate.gateway.config import ModelConfig, parse_config
from fairgate.gateway.model_check import check_models, model_faults
from tests.support import tiny_reasoner as tiny


def vllm_model(folder: Path, **extra: object) -> ModelConfig:
    return ModelConfig(name="m", provider="vllm", model=str(folder), **extra)  # type: ignore[arg-type]


def never(source: str) -> None:
    raise AssertionError(f"the tokenizer of a broken folder must not be loaded ({source})")


def test_a_missing_folder_is_named(tmp_path: Path) -> None:
    assert model_faults(vllm_model(tmp_path / "nope"), never) == [
        f"models.m.model: model folder {tmp_path / 'nope'} does not exist"
    ]


@pytest.mark.parametrize(
    ("content", "says"),
    [(None, "has no config.json"), ("{not json", "is not valid JSON"), ("[]", "names no")],
)
def test_a_broken_config_json_is_named(tmp_path: Path, content: str | None, says: str) -> None:
    if content is not None:
        (tmp_path / "config.json").write_text(content)
    (fault,) = model_faults(vllm_model(tmp_path), never)
    assert fault.startswith("models.m.model: ") and says in fault


def test_a_tokenizer_that_does_not_load_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "tokenizer.json").write_text("{corrupt")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "Fast"}))
    (fault,) = model_faults(vllm_model(tmp_path))
    assert fault.startswith(f"models.m: the tokenizer in {tmp_path} does not load (")


def test_a_missing_tokenizer_path_is_named(tmp_path: Path) -> None:
    model = ModelConfig(name="s", provider="sim", tokenizer=str(tmp_path / "tok"))
    assert model_faults(model, never) == [f"models.s.tokenizer: {tmp_path / 'tok'} does not exist"]


def test_hub_ids_and_the_embedded_default_are_left_to_the_engine() -> None:
    assert (
        model_faults(ModelConfig(name="q", provider="vllm", model="Qwen/Qwen3-0.6B"), never) == []
    )
    assert model_faults(ModelConfig(name="d", provider="vllm"), never) == []


def test_a_complete_folder_passes() -> None:
    folder = tiny.build_tiny_reasoner(tiny.DEFAULT_DIR)
    check_models(
        parse_config({"models": [{"name": "t", "provider": "vllm", "model": str(folder)}]})
    )


def test_serve_exits_2_with_the_reason(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{truncated")
    path = tmp_path / "fairgate.yaml"
    config = {
        "data_dir": str(tmp_path / "data"),
        "models": [{"name": "broken", "model": str(broken)}],
    }
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "fairgate", "serve", "--config", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"models.broken.model: {broken / 'config.json'} is not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
