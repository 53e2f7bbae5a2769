"""The scheduler is a functional core: no I/O, no async, no clock, no engine or web imports."""

from __future__ import annotations

import ast
from pathlib import Path

from fairgate import scheduler

PACKAGE = Path(scheduler.__file__).parent
FORBIDDEN_MODULES = {
    "asyncio",
    "fastapi",
    "starlette",
    "uvicorn",
    "ray",
    "vllm",
    "httpx",
    "requests",
    "aiohttp",
    "prometheus_client",
    "transformers",
    "tokenizers",
    "torch",
    "numpy",
    "socket",
    "threading",
    "multiprocessing",
    "subprocess",
    "os",
    "sys",
    "io",
    "pathlib",
    "shutil",
    "sqlite3",
    "logging",
    "time",
    "datetime",
    "random",
    "secrets",
    "uuid",
    "fairgate.gateway",
    "fairgate.replicas",
    "fairgate.metering",
    "bench",
}
# "random" too: randomness, if a policy ever needs it, comes in as a random.Random argument
# typed by a Protocol, so the caller owns the seed.
FORBIDDEN_CALLS = {"open", "print", "input", "exec", "eval", "breakpoint"}


def sources() -> list[Path]:
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) > 10
    return files


def _root(module: str) -> str:
    """The top-level package, or for our own code the concept package inside ``fairgate``."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "fairgate" else parts[0]


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(_root(alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(_root(node.module))
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
    source = "import asyncio\nfrom time import monotonic\nimport fairgate.scheduler.radix\n"
    source += "from fairgate.metering import Usage\n"
    assert imported_roots(ast.parse(source)) & FORBIDDEN_MODULES == {
        "asyncio",
        "time",
        "fairgate.metering",
    }
