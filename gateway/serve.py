"""``fairgate serve``: logging, first-start defaults, and uvicorn."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import os
import signal
import sys
from types import FrameType

import uvicorn

from fairgate.gateway.app import create_app
from fairgate.gateway.auth import KeyStore
from fairgate.gateway.config import Config
from fairgate.gateway.model_check import check_models
from fairgate.replicas.torch_guard import hide_broken_extensions

log = logging.getLogger("fairgate")
DEFAULT_KEY_FILE = "default-api-key"


class _Formatter(logging.Formatter):
    """One line per event; structured fields (never secrets) appended as JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fairgate", None)
        return f"{line} {json.dumps(fields, sort_keys=True)}" if fields else line


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def ensure_default_tenant(config: Config) -> None:
    """With no tenants at all, create tenant 'default' and write its key to a private file."""
    store = KeyStore(config.data_dir)
    if config.tenants or store.load():
        return
    key = store.create("default")
    path = config.data_dir / DEFAULT_KEY_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    log.info("no tenants configured: created tenant 'default'; its API key is in %s", path)


def serve(config: Config, *, host: str | None, port: int | None, log_level: str) -> int:
    setup_logging(log_level)
    # A crash in native code (Ray's core worker, torch) then leaves every thread's Python stack
    # in the log instead of a bare exit status.
    faulthandler.enable()
    hide_broken_extensions()  # the tokenizers load transformers in this process too
    check_models(config)  # a broken model folder ends the start here (exit 2)
    config.data_dir.mkdir(parents=True, exist_ok=True)
    ensure_default_tenant(config)
    app = create_app(config)
    bind_host = host or config.listen.host
    bind_port = port if port is not None else config.listen.port
    log.info("fairgate listening on http://%s:%d/v1", bind_host, bind_port)
    server = _Server(
        uvicorn.Config(
            app,
            host=bind_host,
            port=bind_port,
            log_config=None,
            log_level=log_level,
            loop="uvloop",  # both core dependencies: the event loop and the HTTP parser in C
            http="httptools",
            timeout_graceful_shutdown=30,
        )
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    return 0 if server.started else 3  # uvicorn's own code for a start that failed


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Ray's core worker in this process handles SIGTERM first (absl's failure handler):
        # it arms a 3 s alarm that aborts the process, and a graceful shutdown (drain the
        # streams, stop the replicas and Ray) takes longer. CI saw exit -6 from it.
        signal.alarm(0)
        super().handle_exit(sig, frame)
