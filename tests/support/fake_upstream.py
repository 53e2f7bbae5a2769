"""An OpenAI-compatible upstream in its own process that misbehaves on purpose.

    python -m tests.support.fake_upstream [--fault MODE] [--after N] [--reasoning R]
        [--content C] [--delay S]

It streams ``/v1/chat/completions`` the way vLLM does (chunked SSE, ``reasoning`` deltas, token
ids per chunk, a final usage chunk, ``[DONE]``) and, after ``N`` token chunks of a request,
injects its fault:

    none        answer normally
    die         the process exits at once (the kernel closes its sockets mid-chunked-body)
    stall       hold the connection open and send nothing more
    malformed   send a ``data:`` line that is not JSON, then end the body properly
    truncate    end the body properly there: no finish_reason, no usage, no ``[DONE]``
    refuse      answer 503 with an OpenAI error instead of a stream (``--after`` is ignored)
    hang        accept the request and never send the response's headers

``--times K`` injects it into the first K requests only. It prints ``PORT <n>`` once it
listens; ``GET /stats`` counts the answers streaming now, ended, and cut by the gateway.
``FakeUpstream`` runs it from a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODEL = "fake-upstream"
REASONING_WORD, CONTENT_WORD = " ponder", " alpha"
_LOCK = threading.Lock()
_STATS = {"active": 0, "served": 0, "broken": 0}  # answers streaming now, ended, cut by the peer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    options: argparse.Namespace

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _json(self, status: int, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._json(200, None)
        elif self.path == "/stats":
            with _LOCK:
                self._json(200, dict(_STATS))
        elif self.path == "/v1/models":
            self._json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)))
        if self.path != "/v1/chat/completions":
            self._json(404, {"error": {"message": "only chat here"}})
            return
        if self.options.fault in ("refuse", "hang") and self._take_fault():
            if self.options.fault == "hang":
                time.sleep(3600)
            self._json(503, {"error": {"message": "overloaded", "type": "server_error"}})
            return
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        with _LOCK:
            _STATS["active"] += 1
        try:
            self._answer(body)
        except (BrokenPipeError, ConnectionResetError):
            with _LOCK:
                _STATS["broken"] += 1
        finally:
            with _LOCK:
                _STATS["active"] -= 1
                _STATS["served"] += 1

    def _send(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _event(self, payload: dict[str, Any]) -> None:
        self._send("data: " + json.dumps(payload) + "\n\n")

    def _answer(self, body: dict[str, Any]) -> None:
        opts = self.options
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 10**9
        steps = [("reasoning", REASONING_WORD, 11)] * opts.reasoning
        steps += [("content", CONTENT_WORD, 22)] * opts.content
        steps = steps[:limit]
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        for index, (part, text, token_id) in enumerate(steps):
            if index == opts.after and self._fault():
                return
            time.sleep(opts.delay)
            delta = {part: text}
            self._event(_chunk(delta, [token_id], None))
        if len(steps) == opts.after and self._fault():
            return
        finish = "length" if len(steps) < opts.reasoning + opts.content else "stop"
        self._event(_chunk({}, [], finish))
        reasoning = sum(1 for part, _, _ in steps if part == "reasoning")
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": len(steps),
            "total_tokens": prompt + len(steps),
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        }
        self._event(
            {"id": "fake", "object": "chat.completion.chunk", "choices": [], "usage": usage}
        )
        self._send("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _take_fault(self) -> bool:
        """Whether this request gets the fault (``--times`` counts down)."""
        with _LOCK:
            if self.options.fault == "none" or self.options.times == 0:
                return False
            self.options.times -= 1
            return True

    def _fault(self) -> bool:
        """Inject a mid-stream fault; True when the answer must stop here."""
        fault = self.options.fault
        if fault in ("refuse", "hang") or not self._take_fault():
            return False
        if fault == "die":
            os._exit(17)
        if fault == "stall":
            time.sleep(3600)
            return True
        if fault == "truncate":
            self.wfile.write(b"0\r\n\r\n")
            return True
        if fault == "malformed":
            self._send('data: {"choices": [{"delta": {"content": "x"\n\n')
            self.wfile.write(b"0\r\n\r\n")
            return True
        return False


def _chunk(delta: dict[str, Any], ids: list[int], finish: str | None) -> dict[str, Any]:
    choice = {"index": 0, "delta": delta, "token_ids": ids, "finish_reason": finish}
    return {"id": "fake", "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]}


def _options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--fault",
        choices=("none", "die", "stall", "malformed", "truncate", "refuse", "hang"),
        default="none",
    )
    parser.add_argument("--after", type=int, default=0)
    parser.add_argument("--reasoning", type=int, default=4)
    parser.add_argument("--content", type=int, default=6)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--times", type=int, default=-1)  # -1: every request
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    options = _options(argv)
    handler = type("Handler", (_Handler,), {"options": options})
    server = ThreadingHTTPServer(("127.0.0.1", options.port), handler)
    server.daemon_threads = True
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


class FakeUpstream:
    """The fake upstream as a child process; ``url`` once started, ``kill()`` to end it."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> FakeUpstream:
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_upstream", *self.args],
            cwd=root,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.kill()
            raise RuntimeError(f"the fake upstream did not start: {line}")
        self.url = f"http://127.0.0.1:{line[1]}"
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()

    def __exit__(self, *exc: object) -> None:
        self.kill()


if __name__ == "__main__":
    main(sys.argv[1:])
