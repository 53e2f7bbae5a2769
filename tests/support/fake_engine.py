"""A tiny HTTP server that looks like an idle vLLM engine to the gateway's background reads:
``/health``, ``/v1/models`` and ``/metrics`` (vLLM 0.32's own exposition, captured in
``tests/replicas/data/vllm-0.32.0-metrics.txt``). It serves no completions."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

VLLM_METRICS = Path(__file__).parents[1] / "replicas" / "data" / "vllm-0.32.0-metrics.txt"


class FakeEngine:
    def __init__(self, metrics_text: str | None = None, *, model: str = "tiny") -> None:
        self.metrics_text = metrics_text if metrics_text is not None else VLLM_METRICS.read_text()
        self.metrics_status = 200
        self.health_status = 200
        self.model = model
        self.requests: list[str] = []
        engine = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                engine.requests.append(self.path)
                if self.path == "/metrics":
                    body = engine.metrics_text.encode()
                    status, kind = engine.metrics_status, "text/plain; version=0.0.4"
                elif self.path == "/health":
                    body, status, kind = b"", engine.health_status, "text/plain"
                elif self.path == "/v1/models":
                    data = {"object": "list", "data": [{"id": engine.model, "object": "model"}]}
                    body, status, kind = json.dumps(data).encode(), 200, "application/json"
                else:
                    body, status, kind = b"not found", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeEngine:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
