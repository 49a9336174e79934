"""Thin backends: a connection and a transaction for SQLite (stdlib `sqlite3`) and PostgreSQL
(psycopg 3, synchronous). The SQL is shared and written with `?` placeholders; the PostgreSQL
backend rewrites them to `%s` (so the shared SQL must not contain `?` or `%` otherwise).

A backend owns one connection and serialises its transactions with a lock, so one `Store` may be
used from any number of worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

BUSY_TIMEOUT_MS = 10_000  # how long SQLite waits for another process's write lock
_MIGRATION_LOCK_KEY = 0x43414D434F4C  # pg_advisory_xact_lock key: "CAMCOL"


class Cursor(Protocol):
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Tx(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


class Backend(Protocol):
    name: str

    def transaction(self, *, write: bool = False, lock: bool = False) -> Any: ...
    def close(self) -> None: ...


class SQLiteBackend:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: no implicit transactions; `transaction()` says BEGIN itself
        self._conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.Lock()
        self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # switching to WAL takes a lock the busy handler does not wait for
        for attempt in range(100):
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                break
            except sqlite3.OperationalError:
                if attempt == 99:
                    raise
                time.sleep(0.05)
        self._conn.execute("PRAGMA synchronous = NORMAL")  # WAL: durable across process crashes
        self._conn.execute("PRAGMA foreign_keys = ON")

    @contextmanager
    def transaction(self, *, write: bool = False, lock: bool = False) -> Iterator[Tx]:
        with self._lock:
            # IMMEDIATE takes the write lock up front: no deadlock-prone read-to-write upgrade
            self._conn.execute("BEGIN IMMEDIATE" if write or lock else "BEGIN")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class _PgTx:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        self._cursor.execute(sql.replace("?", "%s"), params)
        return self._cursor


class PostgresBackend:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg  # only needed, and only imported, when DATABASE_URL names PostgreSQL

        self._psycopg = psycopg
        self._url = url
        self._lock = threading.Lock()
        self._conn = self._connect()

    def _connect(self) -> Any:
        return self._psycopg.connect(self._url, autocommit=True)

    @contextmanager
    def transaction(self, *, write: bool = False, lock: bool = False) -> Iterator[Tx]:
        with self._lock:
            if self._conn.closed:  # the server went away since the last call: reconnect once
                self._conn = self._connect()
            with self._conn.transaction(), self._conn.cursor() as cursor:
                tx = _PgTx(cursor)
                if lock:
                    tx.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK_KEY,))
                yield tx

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def open_backend(url: str) -> SQLiteBackend | PostgresBackend:
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        if not path.startswith("/"):
            raise ValueError(f"sqlite URL needs an absolute path (sqlite:///abs/path.db): {url!r}")
        return SQLiteBackend(Path(path))
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        return PostgresBackend(url)
    raise ValueError("database URL must start with sqlite://, postgresql:// or postgres://")
