"""The database writer's batches: repeated upserts collapse without changing the outcome."""

from __future__ import annotations

from actors.database import coalesce
from collector.storage import EventRow, SourceRow
from tests.storage.rows import job_row


def source_row(job_id: str, index: int, steps_done: int) -> SourceRow:
    return SourceRow(job_id=job_id, index=index, name=f"cam{index}", url="rtsp://h/x",
                     status="running", attempts=1, failures=0, steps_done=steps_done,
                     steps_total=5, errors=[], gaps=[])


def test_coalesce_keeps_the_latest_state_at_the_first_place() -> None:
    event = EventRow(job_id="a", seq=1, at=1.0, type="progress", text="Step 1/5", data={})
    rows = [
        job_row("a", 1.0, "running", step=1),
        source_row("a", 0, 1),
        event,
        job_row("a", 1.0, "running", step=2),
        source_row("a", 1, 1),
        source_row("a", 0, 2),
        job_row("b", 2.0, "running"),
        job_row("a", 1.0, "completed", step=3),
    ]
    assert coalesce(rows) == [
        job_row("a", 1.0, "completed", step=3),
        source_row("a", 0, 2),
        event,
        source_row("a", 1, 1),
        job_row("b", 2.0, "running"),
    ]


def test_coalesce_never_merges_events() -> None:
    events = [EventRow(job_id="a", seq=i, at=1.0, type="progress", text="x", data={})
              for i in (1, 1, 2)]
    assert coalesce(events) == events


async def test_a_database_that_keeps_failing_costs_three_tries_not_one_per_row(monkeypatch):
    """Rows one at a time are for errors in the rows; a locked or unreachable database would make
    each row wait its own timeout."""
    import sqlite3

    import trio

    import actors.database
    from actors.database import DatabaseWriter

    class LockedStore:
        calls = 0

        def apply(self, rows):
            LockedStore.calls += 1
            raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(actors.database, "RETRY_S", 0.01)
    writer = DatabaseWriter(LockedStore())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with trio.fail_after(5):
            writer.send(*[job_row(f"j{i}", float(i), "running") for i in range(50)])
            await writer.flush()
        nursery.cancel_scope.cancel()
    assert LockedStore.calls == 3 and writer.failed_batches == 1 and writer.written == 0
