"""The worker's rooms keep their imports: training knows nothing of HTTP or SQL, and the
worker nothing of the API (the rules in each package's __init__ docstring)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import worker

WORKER = Path(worker.__file__).parent
TRAINING = WORKER / "training"
#: what the training code may not import, directly or through what it imports
NOT_IN_TRAINING = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "httpx",
    "service.store",
    "service.api",
    "service.db",
)
#: what no worker module may import: the worker talks to the store, never to the API
NOT_IN_WORKER = ("fastapi", "starlette", "service.api")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _matches(name: str, forbidden: tuple[str, ...]) -> bool:
    return any(name == f or name.startswith(f + ".") for f in forbidden)


def test_no_worker_file_imports_what_its_room_may_not() -> None:
    found = []
    for path in sorted(WORKER.rglob("*.py")):
        forbidden = NOT_IN_TRAINING if TRAINING in path.parents else NOT_IN_WORKER
        found += [
            f"{path.relative_to(WORKER)}: {n}" for n in _imports(path) if _matches(n, forbidden)
        ]
    assert found == []


def test_the_training_code_loads_nothing_of_http_or_sql() -> None:
    """In a fresh interpreter: what the training modules import, transitively, is checked."""
    modules = sorted(
        "worker." + ".".join(p.relative_to(WORKER).with_suffix("").parts).removesuffix(".__init__")
        for p in TRAINING.rglob("*.py")
    )
    assert "worker.training.fit" in modules and "worker.training.group" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script],
        cwd=WORKER.parent,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "torch" in loaded  # the modules were loaded, not skipped
    assert [name for name in loaded if _matches(name, NOT_IN_TRAINING)] == []
