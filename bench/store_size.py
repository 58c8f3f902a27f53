"""Bytes a stored curve point costs: the curve tables' size on disk over the points they hold.

The curve tables are those whose name starts with `curve` (the series and their chunks and
summaries). The reference is the old design, measured on the same points: one row per point
in `curve_points(series_id, step, value)`, clustered on (series_id, step) (WITHOUT ROWID on
SQLite), as the schema had it until issue 11; made in a scratch file or table for the run.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import psycopg
from sqlalchemy import Engine

#: the old design's table, as migration 0001 made it
OLD_TABLE_SQLITE = """
CREATE TABLE curve_points (
    series_id INTEGER NOT NULL, step INTEGER NOT NULL, value FLOAT,
    PRIMARY KEY (series_id, step)
) WITHOUT ROWID
"""
OLD_TABLE_POSTGRES = """
CREATE TABLE old_curve_points (
    series_id INTEGER NOT NULL, step INTEGER NOT NULL, value FLOAT,
    PRIMARY KEY (series_id, step)
)
"""
#: every b-tree (table or index) of the curve tables, and its pages' bytes
_SQLITE_CURVE_BYTES = """
SELECT coalesce(sum(pgsize), 0) FROM dbstat
WHERE name IN (SELECT name FROM sqlite_master WHERE tbl_name LIKE 'curve%')
"""
#: the curve tables with their indexes and TOAST (where packed arrays of a chunk may go)
_POSTGRES_TABLE_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = current_schema() AND c.relname LIKE %s
"""

#: (series id, step, value) of each point
Point = tuple[int, int, float | None]


def sqlite_curve_bytes(engine: Engine) -> int:
    """The pages of the curve tables and their indexes in a SQLite database (dbstat sees the
    WAL's pages too, so no checkpoint is needed)."""
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(_SQLITE_CURVE_BYTES).scalar_one())


def postgres_curve_bytes(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(_POSTGRES_TABLE_BYTES, ("curve%",)).scalar_one())


def sqlite_old_bytes(folder: Path, points: Iterator[Point]) -> int:
    """The old design's bytes for `points`, in a scratch SQLite file."""
    path = folder / "old-schema.db"
    with sqlite3.connect(path) as conn:
        conn.execute(OLD_TABLE_SQLITE)
        conn.executemany("INSERT INTO curve_points VALUES (?, ?, ?)", points)
        conn.commit()
        (size,) = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name = 'curve_points'"
        ).fetchone()
    conn.close()
    path.unlink()
    return int(size)


def postgres_old_bytes(database_url: str, points: Iterator[Point]) -> int:
    """The old design's bytes for `points`, in a table of the benchmark's own database."""
    url = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(OLD_TABLE_POSTGRES)
        with conn.cursor().copy("COPY old_curve_points FROM STDIN") as copy:
            for point in points:
                copy.write_row(point)
        row = conn.execute(_POSTGRES_TABLE_BYTES, ("old_curve_points",)).fetchone()
        conn.execute("DROP TABLE old_curve_points")
    assert row is not None
    return int(row[0])
