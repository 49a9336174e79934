"""The database writer actor on a real database: what one bad row costs."""

from __future__ import annotations

import trio

from actors.database import DatabaseWriter
from collector.storage import EventRow, Store
from tests.storage.rows import job_row


async def test_one_bad_row_costs_only_itself(store: Store) -> None:
    """A row the database cannot encode (a lone surrogate) used to fail its whole batch three
    times, 1 + 2 + 3 s apart, and then drop it: every job's rows in it, the good ones too."""
    writer = DatabaseWriter(store)
    good = EventRow(job_id="b", seq=1, at=2.0, type="started", text="Collection started", data={})
    bad = EventRow(job_id="b", seq=2, at=2.1, type="error", text="Error: \ud800", data={})
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with trio.fail_after(4):  # under the old retries' 6 s of sleeps
            writer.send(job_row("a", 1.0, "running", step=1), job_row("b", 2.0, "running"),
                        good, bad, job_row("a", 1.0, "completed", step=5))
            await writer.flush()
        nursery.cancel_scope.cancel()
    a, b = store.get_job("a"), store.get_job("b")
    assert a is not None and a["status"] == "completed" and a["progress"]["step"] == 5
    assert b is not None and b["status"] == "running"
    assert [e["type"] for e in store.events("b") or []] == ["started"]
    assert writer.written == 3 and writer.failed_batches == 1  # a's two rows coalesce
