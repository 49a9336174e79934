"""The database writer actor: the one owner of every write to the job history.

Job actors hand it rows (`collector.storage.Write`) with `send_nowait`; it applies them in order, in
batches, each batch one transaction in its own worker thread, so a job never waits for the disk and
state changes land in the order they happened. `flush()` waits until everything sent before it is
committed (used before reads that must see a job's latest state, and on shutdown).

A batch that fails is retried (a locked or briefly unreachable database), unless the failure is
in the rows themselves (text the database cannot encode, a value it cannot bind), which no retry
mends. Then its rows are written one at a time, so one bad row costs only itself: a batch holds
the rows of every running job, and dropping it whole lost other jobs' progress. A batch the
database itself keeps refusing is dropped whole after three tries (row by row, each row would
wait as long: a busy timeout of 10 s is 80 minutes for 500 rows).
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
                if _in_the_rows(exc):
                    self.failed_batches += 1
                    if len(rows) > 1:
                        await self._apply_one_by_one(rows)
                    return
                await trio.sleep(RETRY_S * attempt)
        # The database itself (locked, unreachable, full): rows one by one would each wait as
        # long, so the batch is given up as a whole
        self.failed_batches += 1
        log.error("db.batch_dropped rows=%d", len(rows))

    async def _apply_one_by_one(self, rows: list[Write]) -> None:
        dropped: list[str] = []
        for i, row in enumerate(rows):
            try:
                await trio.to_thread.run_sync(self.store.apply, [row], limiter=self._thread)
                self.written += 1
            except Exception as exc:
                dropped.append(f"{type(row).__name__}({row.job_id}): {exc}")
                if not _in_the_rows(exc):  # the database failed meanwhile: give up the rest
                    dropped += [f"{type(r).__name__}({r.job_id})" for r in rows[i + 1 :]]
                    break
        if dropped:
            log.error("db.rows_dropped rows=%d of=%d first=%s", len(dropped), len(rows), dropped[0])


def _in_the_rows(exc: Exception) -> bool:
    """A failure no retry mends: a value the database cannot encode or bind."""
    return isinstance(exc, (ValueError, TypeError))


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
