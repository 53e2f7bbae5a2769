"""What the fault suite did, for its closing summary (``conftest.pytest_terminal_summary``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Tally:
    faults: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    records_verified: int = 0
    server_errors: int = 0  # 5xx answers (status or stream error event) where none was due
    expected_errors: int = 0  # 5xx that are the honest answer (no replica left, ledger full)

    def fault(self, name: str, count: int = 1) -> None:
        self.faults[name] = self.faults.get(name, 0) + count

    def lines(self) -> list[str]:
        kinds = ", ".join(f"{name} {n}" for name, n in sorted(self.faults.items())) or "none"
        return [
            f"faults injected: {sum(self.faults.values())} ({kinds})",
            f"requests sent: {self.requests}",
            f"ledger records verified: {self.records_verified}",
            f"5xx seen: {self.server_errors} (plus {self.expected_errors} answered 5xx by design:"
            " the upstream failed or stalled where no retry was possible, or the ledger refused"
            " work)",
        ]


TALLY = Tally()
