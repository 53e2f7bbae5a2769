"""A tiny, deterministic reasoning model for tests.

A 2-layer Llama (hidden 128) with a byte-level BPE tokenizer trained on generated local text.
For any chat prompt it answers, under greedy decoding::

    <think>REASONING_TEXT</think>CONTENT_TEXT<|im_end|>

``<think>`` and ``</think>`` are added tokens with one id each. Like the real reasoning models
(DeepSeek-R1, Qwen3) they are *not* marked special, so engines keep their text when they
detokenize with ``skip_special_tokens``. ``<|im_end|>`` is the EOS token.

Build once (cached by a stamp holding this file's hash)::

    python -m tests.support.tiny_reasoner OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

THINK_START = "<think>"
THINK_END = "</think>"
BOS = "<|bos|>"
PAD = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
EOS = IM_END
REASONING_TEXT = (
    "Okay, the user wants an answer. Let me think about it step by step and keep the reply short."
)
CONTENT_TEXT = "The answer is 42. Have a nice day!"
RESPONSE_TEXT = f"{THINK_START}{REASONING_TEXT}{THINK_END}{CONTENT_TEXT}"
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
STAMP_NAME = ".tiny_reasoner.stamp"
DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".cache" / "tiny-reasoner"

_SEED = 1234
_VOCAB_SIZE = 1024
_TRAIN_STEPS = 200
_WORD_TEXT = (
    "the a an one some every this that my your our their cat dog bird fish model server token "
    "request tenant gateway queue cache prompt answer question system user river city house "
    "tree car book music light water time day night number list table engine replica is are "
    "was be can will should could would may run runs sleeps reads writes counts sends waits "
    "asks knows likes wants needs finds makes takes gives tells works calls tries leaves "
    "quickly slowly quietly again never always often today tomorrow here there very really "
    "big small red blue green old new fast slow happy sad long short good bad first last "
    "and or but so because if when while with without about into over under between after "
    "what why how who where which please explain describe write tell show give list compare "
    "hello hi thanks okay yes no maybe sure"
)
_WORDS = tuple(_WORD_TEXT.split())
_PUNCT = (".", ",", "?", "!", ":", ";")


def source_hash() -> str:
    """SHA-256 of this file: the cache key of a built model."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def is_built(out_dir: Path) -> bool:
    stamp = out_dir / STAMP_NAME
    return stamp.is_file() and stamp.read_text().strip() == source_hash()


def build_tiny_reasoner(out_dir: Path = DEFAULT_DIR) -> Path:
    """Build the model folder at ``out_dir`` unless an up-to-date build is already there."""
    out_dir = Path(out_dir)
    if is_built(out_dir):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _build(tmp)
        (tmp / STAMP_NAME).write_text(source_hash() + "\n")
        _replace_dir(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _replace_dir(src: Path, dst: Path) -> None:
    if is_built(dst):  # a concurrent builder won the race
        return
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(src, dst)


# --- text -------------------------------------------------------------------------------


def _sentence(rng: random.Random, n_words: int) -> str:
    words = []
    for i in range(n_words):
        word = rng.choice(_WORDS) if rng.random() < 0.9 else _noise_word(rng)
        words.append(word.capitalize() if i == 0 else word)
        if i < n_words - 1 and rng.random() < 0.08:
            words[-1] += rng.choice(_PUNCT)
    return " ".join(words) + rng.choice(_PUNCT)


def _noise_word(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789+-*/='\"()"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8)))


def _text(rng: random.Random, n_words: int) -> str:
    parts: list[str] = []
    while n_words > 0:
        k = min(n_words, rng.randint(3, 14))
        parts.append(_sentence(rng, k))
        n_words -= k
    return (" " if rng.random() < 0.8 else "\n").join(parts)


def _corpus(rng: random.Random) -> Iterator[str]:
    for _ in range(600):
        yield _text(rng, rng.randint(3, 40))
    for _ in range(50):
        yield RESPONSE_TEXT
        yield f"{IM_START}user\n{_text(rng, 8)}{IM_END}\n{IM_START}assistant\n"


def _messages(rng: random.Random, n_words: int) -> list[dict[str, str]]:
    user = {"role": "user", "content": _text(rng, n_words)}
    roll = rng.random()
    if roll < 0.15:
        return [{"role": "system", "content": _text(rng, rng.randint(2, 20))}, user]
    if roll < 0.3:
        return [
            {"role": "user", "content": _text(rng, rng.randint(1, 20))},
            {"role": "assistant", "content": CONTENT_TEXT},
            user,
        ]
    return [user]


# --- tokenizer --------------------------------------------------------------------------


def _train_tokenizer(rng: random.Random) -> Any:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_VOCAB_SIZE,
        special_tokens=[PAD, BOS, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(_corpus(rng)), trainer=trainer)
    tok.add_tokens(
        [AddedToken(t, special=False, normalized=False) for t in (THINK_START, THINK_END)]
    )
    return tok


def _hf_tokenizer(tok: Any) -> Any:
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, model_max_length=2048
    )
    hf.chat_template = CHAT_TEMPLATE
    return hf


def _save_tokenizer(hf_tok: Any, out: Path) -> None:
    hf_tok.save_pretrained(out)
    (out / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["chat_template"] = CHAT_TEMPLATE
    cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


# --- model ------------------------------------------------------------------------------


def _model_config(hf_tok: Any) -> Any:
    from transformers import LlamaConfig

    ids = hf_tok.convert_tokens_to_ids
    return LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        head_dim=64,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=ids(BOS),
        eos_token_id=ids(EOS),
        pad_token_id=ids(PAD),
    )


def _example(hf_tok: Any, rng: random.Random, n_words: int) -> tuple[list[int], int]:
    """Token ids of prompt + answer, and the prompt's length (its tokens carry no loss)."""
    prompt = hf_tok.apply_chat_template(
        _messages(rng, n_words), add_generation_prompt=True, tokenize=False
    )
    prompt_ids = hf_tok.encode(prompt, add_special_tokens=False)
    answer_ids = hf_tok.encode(RESPONSE_TEXT + EOS, add_special_tokens=False)
    return prompt_ids + answer_ids, len(prompt_ids)


def _batch(hf_tok: Any, rng: random.Random, step: int) -> tuple[Any, Any, Any]:
    import torch

    long = step % 5 == 4
    size, lo, hi = (2, 60, 400) if long else (8, 1, 30)
    examples = [_example(hf_tok, rng, rng.randint(lo, hi)) for _ in range(size)]
    width = max(len(ids) for ids, _ in examples)
    input_ids = torch.full((size, width), hf_tok.pad_token_id, dtype=torch.long)
    labels = torch.full((size, width), -100, dtype=torch.long)
    mask = torch.zeros((size, width), dtype=torch.long)
    for row, (ids, n_prompt) in enumerate(examples):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, n_prompt : len(ids)] = torch.tensor(ids[n_prompt:])
        mask[row, : len(ids)] = 1
    return input_ids, labels, mask


def _train(model: Any, hf_tok: Any, rng: random.Random) -> float:
    import torch

    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10))
    model.train()
    loss_value = float("nan")
    for step in range(_TRAIN_STEPS):
        input_ids, labels, mask = _batch(hf_tok, rng, step)
        loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        loss_value = loss.item()
    model.eval()
    return loss_value


def greedy_answer(
    model: Any, hf_tok: Any, messages: list[dict[str, str]], max_new: int = 80
) -> str:
    """Greedy chat completion with transformers, special tokens kept (for checks)."""
    import torch

    ids = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    input_ids = torch.tensor([hf_tok.encode(ids, add_special_tokens=False)])
    with torch.no_grad():
        out = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=max_new,
            do_sample=False,
            eos_token_id=hf_tok.eos_token_id,
            pad_token_id=hf_tok.pad_token_id,
        )
    return str(hf_tok.decode(out[0, input_ids.shape[1] :], skip_special_tokens=False))


def _check(model: Any, hf_tok: Any) -> None:
    rng = random.Random(_SEED + 1)
    probes = [
        [{"role": "user", "content": "Hello! What is 2+2?"}],
        [{"role": "user", "content": _text(rng, 400)}],
        _messages(rng, 12),
    ]
    for messages in probes:
        got = greedy_answer(model, hf_tok, messages)
        if got != RESPONSE_TEXT + EOS:
            raise RuntimeError(f"tiny reasoner did not learn its answer; greedy output: {got!r}")


def _build(out: Path) -> None:
    import torch
    from transformers import GenerationConfig, LlamaForCausalLM

    torch.manual_seed(_SEED)
    rng = random.Random(_SEED)
    hf_tok = _hf_tokenizer(_train_tokenizer(rng))
    config = _model_config(hf_tok)
    model = LlamaForCausalLM(config)
    loss = _train(model, hf_tok, rng)
    _check(model, hf_tok)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
        do_sample=False,
    )
    out.mkdir(parents=True)
    model.save_pretrained(out, safe_serialization=True)
    _save_tokenizer(hf_tok, out)
    print(f"tiny reasoner: final loss {loss:.4f}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else DEFAULT_DIR
    start = time.monotonic()
    path = build_tiny_reasoner(out)
    print(f"tiny reasoner ready at {path} ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
