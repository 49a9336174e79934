"""The database writer actor: the one owner of every write to the job history.

Job actors hand it rows (`collector.storage.Write`) with `send_nowait`; it applies them in order, in
batches, each batch one transaction in its own worker thread, so a job never waits for the disk and
state changes land in the order they happened. `flush()` waits until everything sent before it is
committed (used before reads that must see a job's latest state, and on shutdown).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import outcome
import trio

from actors.messages import Reply, answer, ask, queued
from collector.storage import JobRow, SourceRow, Store, Write

log = logging.getLogger(__name__)

BATCH = 500
INBOX = 100_000  # rows; a job sends a handful per segment, so this is minutes of a stuck disk
RETRY_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Flush:
    reply: Reply


class DatabaseWriter:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.inbox, self._inbox = trio.open_memory_channel[Write | Flush](INBOX)
        self._thread = trio.CapacityLimiter(1)
        self.written = 0
        self.failed_batches = 0

    def send(self, *rows: Write) -> None:
        """Queue rows for writing; never blocks the caller."""
        for row in rows:
            try:
                self.inbox.send_nowait(row)
            except trio.WouldBlock:
                log.error("db.overflow dropped=%s", type(row).__name__)
            except (trio.ClosedResourceError, trio.BrokenResourceError):  # shutting down
                log.warning("db.closed dropped=%s", type(row).__name__)

    async def flush(self) -> None:
        await ask(self.inbox, lambda reply: Flush(reply=reply))

    async def run(
        self, *, task_status: trio.TaskStatus[DatabaseWriter] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started(self)
        with self._inbox:
            async for first in self._inbox:
                batch: list[Write | Flush] = [first, *queued(self._inbox, BATCH - 1)]
                await self._apply(coalesce([m for m in batch if not isinstance(m, Flush)]))
                for msg in batch:
                    if isinstance(msg, Flush):
                        answer(msg.reply, outcome.Value(None))

    async def _apply(self, rows: list[Write]) -> None:
        if not rows:
            return
        for attempt in range(1, 4):
            try:
                await trio.to_thread.run_sync(self.store.apply, rows, limiter=self._thread)
                self.written += len(rows)
                return
            except Exception as exc:  # a database error must not take the collector down
                log.error("db.write_failed attempt=%d rows=%d error=%s", attempt, len(rows), exc)
                await trio.sleep(RETRY_S * attempt)
        self.failed_batches += 1


def coalesce(rows: list[Write]) -> list[Write]:
    """Upserts of the same job or source within one batch collapse into one: the latest state,
    at the place of the first (so a job's row still comes before its sources' and segments').
    The batch commits as one transaction, so the result is the same as writing each in turn."""
    first: dict[tuple[Any, ...], int] = {}
    out: list[Write] = []
    for row in rows:
        match row:
            case JobRow():
                key: tuple[Any, ...] | None = ("job", row.job_id)
            case SourceRow():
                key = ("source", row.job_id, row.index)
            case _:
                key = None
        if key is None:
            out.append(row)
        elif (at := first.get(key)) is not None:
            out[at] = row
        else:
            first[key] = len(out)
            out.append(row)
    return out


class DatabaseReader:
    """Reads in a worker thread of their own, one at a time, on a separate connection."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._thread = trio.CapacityLimiter(1)

    async def read(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await trio.to_thread.run_sync(
            lambda: fn(self.store, *args, **kwargs), limiter=self._thread
        )
