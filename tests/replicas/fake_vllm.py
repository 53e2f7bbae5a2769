"""A stand-in for the vLLM OpenAI server: answers /health, /v1/models and /v1/completions.

    python fake_vllm.py PORT [--children N] [--exit-after S]

``--children`` starts N sleeping child processes in the server's process group (like vLLM's
EngineCore), so tests can check that stopping the server leaves none of them behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    def _send(self, status: int, body: dict | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200)
        elif self.path == "/v1/models":
            self._send(200, {"data": [{"id": "fake", "max_model_len": 1234}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        self._send(200, {"choices": [{"text": "hi", "finish_reason": "length"}]})

    def log_message(self, *args: object) -> None:
        pass


def main(argv: list[str]) -> None:
    port = int(argv[0])
    children = int(argv[argv.index("--children") + 1]) if "--children" in argv else 0
    exit_after = float(argv[argv.index("--exit-after") + 1]) if "--exit-after" in argv else None
    for _ in range(children):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    if exit_after is not None:
        time.sleep(exit_after)
        sys.exit(3)
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
