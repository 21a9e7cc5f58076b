"""The policy revision: one counter bumped by every admin change, so every gateway sees it next request.

Every change to principals, credentials, grants or policy lines bumps the counter in the same
transaction. A gateway compares the counter it loaded with the stored one before deciding a
request. On SQLite a second process's commit is noticed through `PRAGMA data_version`, which
costs microseconds, so the counter is only read when something was committed. Other databases
are told by the Casbin watcher (Redis) and, as a fallback, polled once a second.
"""

from __future__ import annotations

import sqlite3
import threading
import time

from sqlalchemy import Column, Connection, Engine, Integer, String, Table, select, update

from gateway.db import metadata

revision_table = Table(
    "revision",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("value", Integer, nullable=False),
)


def bump(conn: Connection) -> None:
    """Bump the policy revision inside the caller's transaction."""
    result = conn.execute(
        update(revision_table)
        .where(revision_table.c.name == "policy")
        .values(value=revision_table.c.value + 1)
    )
    if result.rowcount == 0:
        conn.execute(revision_table.insert().values(name="policy", value=1))


def read(conn: Connection) -> int:
    value = conn.execute(
        select(revision_table.c.value).where(revision_table.c.name == "policy")
    ).scalar()
    return int(value or 0)


class RevisionMonitor:
    """Tells cheaply whether the stored policy revision may have moved since the last look."""

    POLL_SECONDS = 1.0

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._sqlite: sqlite3.Connection | None = None
        self._data_version = -1
        self._next_poll = 0.0
        self._poked = True
        if engine.url.get_backend_name() == "sqlite" and engine.url.database:
            # A private connection: data_version moves when any *other* connection commits.
            self._sqlite = sqlite3.connect(engine.url.database, check_same_thread=False)

    def poke(self) -> None:
        """Called by a watcher (or the admin API in this process) when a change was announced."""
        self._poked = True

    def maybe_changed(self) -> bool:
        if self._poked:
            self._poked = False
            return True
        if self._sqlite is not None:
            with self._lock:
                version = self._sqlite.execute("PRAGMA data_version").fetchone()[0]
            if version != self._data_version:
                self._data_version = version
                return True
            return False
        now = time.monotonic()
        if now >= self._next_poll:
            self._next_poll = now + self.POLL_SECONDS
            return True
        return False

    def close(self) -> None:
        if self._sqlite is not None:
            self._sqlite.close()
