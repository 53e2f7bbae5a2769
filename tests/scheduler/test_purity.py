"""The scheduler is a functional core: no I/O, no async, no clock, no engine or web imports."""

from __future__ import annotations

import ast
from pathlib import Path

import scheduler

PACKAGE = Path(scheduler.__file__).parent
FORBIDDEN_MODULES = {
    "asyncio", "fastapi", "starlette", "uvicorn", "ray", "vllm", "httpx", "requests", "aiohttp",
    "prometheus_client", "transformers", "tokenizers", "torch", "numpy", "socket", "threading",
    "multiprocessing", "subprocess", "os", "sys", "io", "pathlib", "shutil", "sqlite3",
    "logging", "time", "datetime", "random", "secrets", "uuid",
    "gateway", "replicas", "metering", "bench",
}
# "random" too: randomness, if a policy ever needs it, comes in as a random.Random argument
# typed by a Protocol, so the caller owns the seed.
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "breakpoint"}


def sources() -> list[Path]:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) > 10
    return files


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_no_forbidden_imports():
    for path in sources():
        bad = imported_roots(ast.parse(path.read_text(), str(path))) & FORBIDDEN_MODULES
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_no_io_calls_no_asserts_no_async():
    for path in sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            where = f"{path.name}:{getattr(node, 'lineno', '?')}"
            assert not isinstance(node, ast.Assert), f"{where}: assert used as validation"
            assert not isinstance(node, ast.AsyncFunctionDef | ast.Await), f"{where}: async"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                assert node.func.id not in FORBIDDEN_CALLS, f"{where}: calls {node.func.id}()"


def test_the_checker_catches_what_it_should():
    tree = ast.parse("import asyncio\nfrom time import monotonic\nimport scheduler.radix\n")
    assert imported_roots(tree) & FORBIDDEN_MODULES == {"asyncio", "time"}
