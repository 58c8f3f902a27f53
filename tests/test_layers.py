"""The house's layering, kept: what each room may import (README, "How it is built").

Every import of every module counts, those inside functions too, so a rule cannot be dodged
by importing late.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: what the training code may not import, directly or through what it imports
TRAINING_FORBIDS = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "httpx",
    "uvicorn",
    "service.store",
    "service.api",
    "service.db",
    "service.wakeup",
)

#: (the room, the imports it must not make, why)
RULES = [
    (
        "worker/training",
        (
            "sqlalchemy",
            "fastapi",
            "starlette",
            "httpx",
            "uvicorn",
            "service.store",
            "service.api",
            "service.db",
            "service.wakeup",
        ),
        "the training code knows nothing of HTTP or SQL",
    ),
    (
        "service/spec",
        (
            "sqlalchemy",
            "fastapi",
            "torch",
            "service.store",
            "service.api",
            "service.db",
            "service.config",
            "worker",
        ),
        "the spec is pure pydantic: limits come in with the call",
    ),
    (
        "service/api/routes",
        ("sqlalchemy", "service.db"),
        "routes call the store and open no transaction",
    ),
    (
        "service/store",
        ("fastapi", "starlette", "torch", "service.api", "worker"),
        "the data layer serves the API and the workers alike",
    ),
    (
        "service/client",
        (
            "sqlalchemy",
            "torch",
            "service.store",
            "service.spec",
            "service.db",
            "service.api",
            "worker",
        ),
        "the client speaks HTTP only",
    ),
    (
        "service/plots",
        ("sqlalchemy", "fastapi", "torch", "service.store", "service.db", "service.api"),
        "pictures take numbers, never the database",
    ),
    (
        "service/schemas",
        ("sqlalchemy", "fastapi", "torch", "service.store", "service.db", "service.api"),
        "the public shapes are pure pydantic",
    ),
]


def imports_of(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def breaks(module: str, forbidden: tuple[str, ...]) -> bool:
    return any(module == name or module.startswith(f"{name}.") for name in forbidden)


@pytest.mark.parametrize(("room", "forbidden", "why"), RULES, ids=[r[0] for r in RULES])
def test_a_room_imports_only_what_it_may(room: str, forbidden: tuple[str, ...], why: str) -> None:
    files = sorted((ROOT / room).rglob("*.py"))
    assert files, f"{room} holds no Python file: the rule guards nothing"
    broken = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path in files
        for module in sorted(imports_of(path))
        if breaks(module, forbidden)
    ]
    assert not broken, f"{why}: " + "; ".join(broken)


def test_the_import_reader_sees_late_and_dotted_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\nfrom service.store import job_queue\n"
        "def f():\n    from sqlalchemy import select\n"
    )
    seen = imports_of(module)
    assert {"os.path", "service.store", "service.store.job_queue", "sqlalchemy"} <= seen
    assert breaks("service.store.job_queue", ("service.store",))
    assert not breaks("service.storefront", ("service.store",))


def test_the_training_code_loads_nothing_of_http_or_sql() -> None:
    """In a fresh interpreter: what the training modules import, transitively, is checked."""
    training = ROOT / "worker" / "training"
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in training.rglob("*.py")
    )
    assert "worker.training.fit" in modules and "worker.training.group" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sys.modules))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert "torch" in loaded  # the modules were loaded, not skipped
    assert [name for name in loaded if breaks(name, TRAINING_FORBIDS)] == []
