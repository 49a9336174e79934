"""One serving process per SQLite history: a lock file beside the database.

On start the collector marks every job the history says is running `interrupted` (a crash left
them so). A second process on the same data directory would do that to the first one's live
jobs, and the two would then write events with the same sequence numbers, each dropping the
other's (a replay then skips a step). So the serving process holds an exclusive `flock` on
`<database>.lock` for its whole life; a second one waits for it a while (a restart, or a deploy
that starts the new process before the old one has drained), then gives up with
`DatabaseInUse`. The kernel releases the lock when its holder exits, however it exits.

PostgreSQL (`DATABASE_URL`) is not guarded: one process per database is the rule there too.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import trio

from collector.errors import CollectorError

POLL_S = 0.2


class DatabaseInUse(CollectorError):
    """Another collector process serves from this history."""


async def hold(database_url: str, wait_s: float, stop: trio.Event | None = None) -> int | None:
    """Take the lock of `database_url`'s SQLite file, waiting up to `wait_s` for another
    process to let it go; its file descriptor (the caller closes it at exit), or None for a
    database this does not guard, or when `stop` is set while it waits."""
    if not database_url.startswith("sqlite://"):
        return None
    path = Path(database_url.removeprefix("sqlite://") + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        with trio.move_on_after(wait_s):
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return fd
                except BlockingIOError:
                    if stop is not None and stop.is_set():
                        os.close(fd)
                        return None
                    await trio.sleep(POLL_S)
        raise DatabaseInUse(
            f"another collector process is serving from {path.parent} (it holds {path.name});"
            f" waited {wait_s:g} s. Only one process may use a data directory at a time."
        )
    except BaseException:
        os.close(fd)
        raise
