from __future__ import annotations

from typing import Any

from tests.faults.tally import TALLY


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not (TALLY.requests or TALLY.faults):
        return
    terminalreporter.section("fault injection")
    for line in TALLY.lines():
        terminalreporter.write_line(line)
