"""The PostgreSQL server the benchmarks use, and a database of their own on it, dropped after."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from sqlalchemy.engine import make_url

#: the PostgreSQL server the tests use (the same variable names another); a benchmark makes
#: and drops its own database there
POSTGRES = os.environ.get("DESCENT_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_down() -> str | None:
    """Why no server answers, or None when one does."""
    try:
        psycopg.connect(POSTGRES, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        return str(exc).splitlines()[0]
    return None


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh database's URL, dropped afterwards; psycopg.OperationalError if none answers."""
    name = f"descent_bench_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = make_url(POSTGRES).set(drivername="postgresql+psycopg", database=name)
        yield url.render_as_string(hide_password=False)
    finally:
        with psycopg.connect(POSTGRES, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
