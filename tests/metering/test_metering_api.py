"""The public API of ``metering`` and the purity of its functional core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from fairgate import metering

REPO = Path(__file__).resolve().parents[2]


def test_all_is_exactly_the_public_names() -> None:
    assert len(metering.__all__) == len(set(metering.__all__))
    for name in metering.__all__:
        assert hasattr(metering, name), name
    ours = "fairgate.metering"
    exported = {
        name for name, value in vars(metering).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith(ours)
    }  # fmt: skip
    assert exported == set(metering.__all__) - {"EMPTY_ROOT", "GENESIS_HASH"}
    assert metering.Usage.__module__ == "fairgate.metering.usage"


def test_core_imports_no_asyncio_http_ray_prometheus_or_db_driver() -> None:
    core = [
        f"fairgate.metering.{name}"
        for name in ("merkle", "commitment", "canonical", "signing", "record", "verify", "pricing")
    ] + ["fairgate.metering.export"]
    forbidden = [
        "asyncio", "http", "httpx", "fastapi", "starlette", "ray", "prometheus_client",
        "psycopg", "sqlite3", "vllm", "transformers",
    ]  # fmt: skip
    code = (
        "import importlib, sys\n"
        f"for name in {core!r}: importlib.import_module(name)\n"
        f"print(' '.join(m for m in {forbidden!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.strip() == ""
