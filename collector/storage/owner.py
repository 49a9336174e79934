"""One serving process per history: a lock file beside a SQLite database, an advisory lock in
PostgreSQL.

On start the collector marks every job the history says is running `interrupted` (a crash left
them so). A second process on the same data directory would do that to the first one's live
jobs, and the two would then write events with the same sequence numbers, each dropping the
other's (a replay then skips a step). So the serving process holds an exclusive `flock` on
`<database>.lock` for its whole life; a second one waits for it a while (a restart, or a deploy
that starts the new process before the old one has drained), then gives up with
`DatabaseInUse`. The kernel releases the lock when its holder exits, however it exits.

PostgreSQL (`DATABASE_URL`): the same, with a session advisory lock (`pg_try_advisory_lock`)
held by a connection of its own for the process's life; the server releases it when that
connection ends, however the process exits. Its key is the URL without credentials (two
schemas of one database are two histories). A connection the server drops (its restart) loses
the lock without a word: the process serves on unguarded.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from collector.errors import CollectorError
from collector.urls import redact

POLL_S = 0.2


class DatabaseInUse(CollectorError):
    """Another collector process serves from this history."""


async def hold(database_url: str, wait_s: float,
               stop: trio.Event | None = None) -> Callable[[], None] | None:
    """Take the lock of the history at `database_url`, waiting up to `wait_s` for another
    process to let it go; what releases it (the caller calls it at exit), or None when `stop`
    is set while it waits."""
    if database_url.startswith(("postgresql://", "postgres://")):
        import psycopg  # only needed, and only imported, when DATABASE_URL names PostgreSQL

        key = lock_key(database_url)
        conn: Any = await trio.to_thread.run_sync(
            lambda: psycopg.connect(database_url, autocommit=True, connect_timeout=10))

        async def take_advisory_lock() -> bool:
            row = await trio.to_thread.run_sync(
                lambda: conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone())
            return bool(row and row[0])

        return await _wait_for(
            take_advisory_lock, conn.close, wait_s, stop,
            f"another collector process is serving from the PostgreSQL history at "
            f"{redact(database_url)}; waited {wait_s:g} s. Only one process may use a history"
            f" at a time.")
    path = Path(database_url.removeprefix("sqlite://") + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)

    async def take_file_lock() -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    return await _wait_for(
        take_file_lock, lambda: os.close(fd), wait_s, stop,
        f"another collector process is serving from {path.parent} (it holds {path.name});"
        f" waited {wait_s:g} s. Only one process may use a data directory at a time.")


async def _wait_for(take: Callable[[], Awaitable[bool]], release: Callable[[], None],
                    wait_s: float, stop: trio.Event | None,
                    refusal: str) -> Callable[[], None] | None:
    """Try `take` every POLL_S for up to `wait_s`: `release` once it succeeds; None, released,
    when `stop` is set meanwhile; else DatabaseInUse(`refusal`), released."""
    try:
        with trio.move_on_after(wait_s):
            while True:
                if await take():
                    return release
                if stop is not None and stop.is_set():
                    release()
                    return None
                await trio.sleep(POLL_S)
        raise DatabaseInUse(refusal)
    except BaseException:
        release()
        raise


def lock_key(database_url: str) -> int:
    """The advisory lock key (a signed 64-bit integer) of a PostgreSQL history."""
    digest = hashlib.blake2b(f"camera-collector {redact(database_url)}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)
