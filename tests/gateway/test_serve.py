"""``fairgate serve``'s process-level behaviour that the e2e tests see only by chance."""

from __future__ import annotations

import signal
from types import FrameType

import uvicorn

from fairgate.gateway.serve import _Server


def test_a_stop_signal_disarms_the_abort_alarm_that_rays_handler_sets() -> None:
    """Ray's native SIGTERM handler arms ``alarm(3)`` with an aborting SIGALRM handler; a
    graceful shutdown longer than 3 s then ended as SIGABRT (exit -6 in CI)."""
    fired: list[int] = []

    def on_alarm(sig: int, frame: FrameType | None) -> None:
        fired.append(sig)

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.alarm(30)  # as Ray's handler does, with its 3 s
        server = _Server(uvicorn.Config(app=None))  # type: ignore[arg-type]
        server.handle_exit(signal.SIGTERM, None)
        assert server.should_exit
        assert signal.alarm(0) == 0  # nothing was pending any more
        assert not fired
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
