"""A gateway in front of two fake OpenAI-compatible upstream processes: the first one faulty,
the second healthy. Requests go out with httpx so the test sees every SSE line."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.faults.tally import TALLY
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway_server import GatewayServer, sim_config

REASONING, CONTENT = 4, 6
HEALTHY_ANSWER = " alpha" * CONTENT


@dataclass
class Answer:
    status: int
    request_id: str
    text: str = ""
    error: dict[str, Any] | None = None
    done: bool = False
    lines: list[str] = field(default_factory=list)

    @property
    def server_error(self) -> bool:
        return self.status >= 500 or (
            self.error is not None and self.error.get("type") in ("api_error", "server_error")
        )


def upstream_config(
    data_dir: Path, urls: list[str], top: dict[str, Any] | None = None, **model: Any
) -> Any:
    return sim_config(
        data_dir,
        models=[
            {
                "name": "up",
                "provider": "openai",
                "endpoints": urls,
                "upstream_model": "fake-upstream",
                "reasoning": "hidden",
                **model,
            }
        ],
        **(top or {}),
    )


@contextmanager
def faulty_pair(
    tmp: Path, *fault: str, top: dict[str, Any] | None = None, **model: Any
) -> Iterator[GatewayServer]:
    """A gateway whose model ``up`` has the faulty upstream first, a healthy one second."""
    shape = ["--reasoning", str(REASONING), "--content", str(CONTENT)]
    with (
        FakeUpstream(*shape, *fault) as faulty,
        FakeUpstream(*shape) as healthy,
        GatewayServer(upstream_config(tmp, [faulty.url, healthy.url], top, **model)) as server,
    ):
        server.faulty = faulty  # type: ignore[attr-defined]
        yield server


def ask(server: GatewayServer, *, stream: bool, timeout: float = 20, content: str = "hi") -> Answer:
    body = {"model": "up", "messages": [{"role": "user", "content": content}], "stream": stream}
    headers = {"Authorization": "Bearer sk-alice"}
    TALLY.requests += 1
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=timeout) as http:
        if not stream:
            response = http.post("/v1/chat/completions", json=body)
            answer = Answer(response.status_code, response.headers["x-request-id"])
            data = response.json()
            if response.status_code == 200:
                answer.text = data["choices"][0]["message"]["content"] or ""
                answer.done = True
            else:
                answer.error = data["error"]
            return answer
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            answer = Answer(response.status_code, response.headers["x-request-id"])
            if response.status_code != 200:
                answer.error = json.loads(response.read())["error"]
            else:
                _read_events(response, answer)
    return answer


def _read_events(response: httpx.Response, answer: Answer) -> None:
    for line in response.iter_lines():
        answer.lines.append(line)
        if not line.startswith("data: "):
            continue
        payload = line[6:]
        if payload == "[DONE]":
            answer.done = True
            continue
        chunk = json.loads(payload)
        if "error" in chunk:
            answer.error = chunk["error"]
            continue
        for choice in chunk.get("choices") or []:
            answer.text += (choice.get("delta") or {}).get("content") or ""


def count_errors(answers: list[Answer], expected: Collection[str] = ()) -> None:
    """Tally the 5xx answers; those in ``expected`` (request ids) are the honest answer."""
    for answer in answers:
        if answer.server_error:
            if answer.request_id in expected:
                TALLY.expected_errors += 1
            else:
                TALLY.server_errors += 1


def retries(server: GatewayServer) -> float:
    value = server.runtime.metrics.registry.get_sample_value(
        "fairgate_retries_total", {"model": "up"}
    )
    return value or 0.0
