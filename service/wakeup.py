"""Waking idle workers: LISTEN/NOTIFY on PostgreSQL, a short poll on SQLite.

A job that becomes queued notifies `descent_jobs` in the transaction that queues it, so the
notification goes out when that transaction commits. An idle worker waits on a connection of
its own that listens on the channel. A notification can be missed (the listening connection
dropped, or was not yet listening), so the wait also ends after a slow fallback poll.
"""

from __future__ import annotations

import logging
import threading
import time

import psycopg
from sqlalchemy import Connection
from sqlalchemy.engine import make_url

from service.db.engine import normalize_url

log = logging.getLogger(__name__)

#: the channel a newly queued job is announced on
CHANNEL = "descent_jobs"
#: seconds between looks at the stop event while waiting for a notification
STOP_CHECK_SECONDS = 0.1
#: seconds the listening connection may take to connect before the attempt fails
CONNECT_TIMEOUT_SECONDS = 5


def notify_new_job(conn: Connection) -> None:
    """Announce a queued job to idle workers when `conn`'s transaction commits (PostgreSQL)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


class Waiter:
    """What an idle worker waits on before it looks at the queue again."""

    def __init__(self, url: str, *, poll_seconds: float, fallback_seconds: float) -> None:
        url = normalize_url(url)
        self.poll_seconds, self.fallback_seconds = poll_seconds, fallback_seconds
        self._conninfo: str | None = None
        if url.startswith("postgresql"):
            pg_url = make_url(url).set(drivername="postgresql")
            self._conninfo = pg_url.render_as_string(hide_password=False)
        self._conn: psycopg.Connection | None = None
        self._failing = False

    def wait(self, stop: threading.Event) -> None:
        """Return when a job may have been queued, or when `stop` is set."""
        if self._conninfo is None:
            stop.wait(self.poll_seconds)
        elif self._conn is None:
            # once listening, the caller looks at the queue again: a job queued before the
            # LISTEN took effect sent its notification to no one
            self._listen(stop)
        else:
            self._wait_notified(self._conn, stop)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _listen(self, stop: threading.Event) -> None:
        assert self._conninfo is not None
        try:
            conn = psycopg.connect(
                self._conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS
            )
            conn.execute(f"LISTEN {CHANNEL}")
        except psycopg.Error as exc:
            if not self._failing:  # once per outage, not once a second
                log.warning(
                    "cannot listen for new jobs (%s); polling every %ss", exc, self.fallback_seconds
                )
            self._failing = True
            stop.wait(self.fallback_seconds)
            return
        log.info("listening for new jobs%s", " again" if self._failing else "")
        self._conn, self._failing = conn, False

    def _wait_notified(self, conn: psycopg.Connection, stop: threading.Event) -> None:
        deadline = time.monotonic() + self.fallback_seconds
        try:
            while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if list(conn.notifies(timeout=min(left, STOP_CHECK_SECONDS), stop_after=1)):
                    # those that came while the worker was busy say nothing new: drop them
                    list(conn.notifies(timeout=0))
                    return
        except psycopg.Error as exc:
            log.warning("the connection listening for new jobs dropped (%s); reconnecting", exc)
            self.close()
            self._failing = True
