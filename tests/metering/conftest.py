"""Fixtures for metering tests: a throwaway PostgreSQL server, started with initdb/pg_ctl.

The server runs from a temp dir on a private unix socket (no TCP port), as the current user, or
as ``postgres`` (else ``nobody``) when the tests run as root, since PostgreSQL refuses root.
Tests that use it are skipped only when the PostgreSQL binaries are absent; a server that is
installed but fails to start is an error.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fairgate.metering.commitment import HiddenCommitter
from fairgate.metering.export import export_ledger
from fairgate.metering.ledger import Ledger, open_ledger
from fairgate.metering.record import LedgerEntry
from fairgate.metering.signing import SigningKey
from fairgate.metering.usage import Usage
from tests.support.postgres import PostgresServer, pg_bin


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """Conninfo URL of a fresh PostgreSQL server's ``postgres`` database, for this session."""
    bin_dir = pg_bin()
    if bin_dir is None:
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL binaries (initdb, pg_ctl) are missing in CI")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) are not installed")
    server = PostgresServer(bin_dir, options="-c max_connections=30").init()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a generated name, not user input
    return postgres_server.replace("/postgres?", f"/{name}?")


# --- ledger helpers -------------------------------------------------------------------------

T0 = 1_750_000_000.0  # a fixed clock: records are reproducible


def make_entry(
    i: int,
    *,
    tenant: str = "acme",
    model: str = "m1",
    reasoning: int = 0,
    status: str = "ok",
    status_code: int = 200,
    block_size: int = 4,
    salt: bytes | None = None,
) -> LedgerEntry:
    """Entry ``i``: finished at T0 + i seconds, with ``reasoning`` committed hidden tokens."""
    committer = HiddenCommitter(block_size=block_size, salt=salt or bytes([i % 256]) * 32)
    for position in range(reasoning):
        committer.add([1000 + position], f"w{position} ")
    return LedgerEntry(
        request_id=f"req-{i}",
        tenant=tenant,
        model=model,
        replica="r0",
        status=status,
        status_code=status_code,
        started_at=T0 + i - 0.5,
        finished_at=T0 + i,
        usage=Usage(
            prompt_tokens=20, cached_tokens=5, completion_tokens=10 + reasoning,
            reasoning_tokens=reasoning,
        ),
        commitment=committer.commit(),
        opening=committer.opening() if reasoning else None,
    )  # fmt: skip


@pytest.fixture(scope="session")
def signing_key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def sqlite_ledger(tmp_path: Path, signing_key: SigningKey) -> Iterator[Ledger]:
    ledger = open_ledger(None, tmp_path, signing_key)
    yield ledger
    ledger.close()


def fill(ledger: Ledger, count: int, *, start: int = 0) -> list[dict[str, object]]:
    """Append ``count`` entries, alternating tenants acme/globex, some with reasoning."""
    for i in range(start, start + count):
        ledger.append(make_entry(i, tenant="acme" if i % 2 == 0 else "globex", reasoning=i % 5))
    return list(ledger.records())


def export_lines(ledger: Ledger, **filters: Any) -> list[str]:
    buffer = io.StringIO()
    export_ledger(ledger, buffer, "jsonl", **filters)
    return buffer.getvalue().splitlines(keepends=True)


class LedgerHelpers:
    """The helpers above, as one fixture (test modules do not import conftest)."""

    T0 = T0
    make_entry = staticmethod(make_entry)
    fill = staticmethod(fill)
    export_lines = staticmethod(export_lines)


@pytest.fixture
def helpers() -> type[LedgerHelpers]:
    return LedgerHelpers
