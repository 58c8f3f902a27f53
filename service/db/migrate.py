"""Apply Alembic migrations on start, safely when the API and many workers start at once."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

from service.db.engine import writing

#: key of the PostgreSQL advisory lock that serialises migrations
MIGRATION_LOCK_KEY = 0x44455343  # "DESC"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", "service.db:migrations")
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to head inside one locked transaction.

    The lock (SQLite's write lock, PostgreSQL's advisory lock) is taken before Alembic reads
    the current revision, so a second process waits, then finds the schema already at head.
    """
    cfg = alembic_config()
    with writing(engine) as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
        else:
            # BEGIN IMMEDIATE is lazy in SQLAlchemy: touch the database to take the lock now
            conn.exec_driver_sql("SELECT 1")
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
