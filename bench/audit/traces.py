"""Honest reasoning traces: CHAMP's competition-math problems and the models' own solutions.

``champ-dataset`` (PyPI, 1.0.0) ships CHAMP (Mao et al., 2024): 270 problems in five categories,
each with the full conversations of GPT-3.5, GPT-4, GPT-4 Turbo and PaLM 2 Medium solving it. In
the "0-Shot" setting a model first works the problem ("show your work") and then, asked to
summarise, states the answer in one sentence. The work is the hidden reasoning, the sentence the
visible answer, the problem (with the system prompt) the prompt.

Token ids come from the auditor's WordPiece tokenizer (the embedding model's own, which the
``audit`` extra ships): only their count and block boundaries matter here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import util
from pathlib import Path
from typing import Any

MODELS = ("GPT-3.5", "GPT-4", "GPT-4 Turbo", "PaLM 2 Medium")
SETTINGS = ("0-Shot", "5-Shot")


@dataclass(frozen=True, slots=True)
class Trace:
    problem: str
    category: str
    model: str
    prompt: str
    reasoning: str
    answer: str
    token_ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]  # per token, its characters in ``reasoning``

    def block_texts(self, block_size: int) -> list[str]:
        """Each block's text: from its first token's start to the next block's first token."""
        starts = [self.offsets[i][0] for i in range(0, len(self.offsets), block_size)]
        ends = [*starts[1:], len(self.reasoning)]
        return [self.reasoning[a:b] for a, b in zip(starts, ends, strict=True)]


def _dataset() -> dict[str, Any]:
    spec = util.find_spec("champ_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install champ-dataset (the bench's question set)")
    root = Path(next(iter(spec.submodule_search_locations)))
    data: dict[str, Any] = json.loads((root / "dataset_files" / "v0.json").read_text())
    return data


@cache
def tokenizer() -> Any:
    from tokenizers import Tokenizer

    from fairgate.metering.embedding import _locate

    tok = Tokenizer.from_file(str(_locate()[1]))
    tok.no_truncation()
    tok.no_padding()
    return tok


def _conversation(problem: dict[str, Any], key: str) -> tuple[str, str, str] | None:
    conversation = problem["conversations"].get(key)
    if not conversation:
        return None
    messages = conversation["messages"]
    texts = [m["text"] for m in messages]
    if len(messages) < 4 or any(t is None for t in texts) or any(m["error"] for m in messages):
        return None
    prompt = f"{texts[0]}\n\n{texts[-4 if len(texts) > 4 else 1]}"
    return prompt, texts[-3], texts[-1]


def load_traces(min_tokens: int = 48, settings: tuple[str, ...] = SETTINGS) -> list[Trace]:
    tok = tokenizer()
    traces = []
    for pid, problem in sorted(_dataset()["problems"].items()):
        for model in MODELS:
            for setting in settings:
                found = _conversation(problem, f"{model}|{setting}")
                if found is None:
                    continue
                prompt, reasoning, answer = found
                encoding = tok.encode(reasoning, add_special_tokens=False)
                if len(encoding.ids) < min_tokens:
                    continue
                traces.append(
                    Trace(
                        problem=pid,
                        category=problem["category"],
                        model=f"{model}|{setting}",
                        prompt=prompt,
                        reasoning=reasoning,
                        answer=answer,
                        token_ids=tuple(encoding.ids),
                        offsets=tuple(encoding.offsets),
                    )
                )
    return traces


def split(traces: list[Trace]) -> tuple[list[Trace], list[Trace]]:
    """Calibration and test halves by problem (odd and even problem numbers)."""
    calibration = [t for t in traces if int(t.problem.rsplit("_", 1)[1]) % 2 == 1]
    test = [t for t in traces if int(t.problem.rsplit("_", 1)[1]) % 2 == 0]
    return calibration, test
