"""The store against both backends (see conftest.py): shapes equal to the in-memory records',
upserts, event order, paging, shutdown, deletion, retention, cameras, credentials."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
import uuid
from pathlib import Path

import pytest
import trio

from actors import events as job_events
from collector.errors import RequestError
from collector.storage import (
    CameraRow,
    EventRow,
    SegmentRow,
    SourceRow,
    Store,
    database_url,
    schema,
)
from collector.storage.schema import LATEST
from tests.storage.rows import SECRET, job_row, record, rows_for


def test_migrations_are_idempotent(database_url: str) -> None:
    """Opening migrates once; reopening (or two openers at once) applies nothing again."""
    results: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def opener() -> None:
        try:
            barrier.wait()
            s = Store.open(database_url)
            results.append(s.schema_version())
            s.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert results == [LATEST] * 4
    store = Store.open(database_url)
    try:
        assert store.schema_version() == LATEST == 3
        with store._backend.transaction() as tx:
            assert tx.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == LATEST
    finally:
        store.close()


def test_round_trip_has_the_record_view_shape(store: Store) -> None:
    """get_job returns exactly JobRecord.view(), segments ordered by source then index."""
    rec = record()
    rows = rows_for(rec)
    random.Random(1).shuffle(rows[1:])  # sources and segments in any order; the job row first
    store.apply(rows)
    got = store.get_job(rec.id)
    assert got == rec.view()
    assert got is not None and list(got) == list(rec.view())  # same keys, same order
    assert store.get_job("nope") is None
    assert store.list_jobs(status=None, since=None, until=None, limit=10, before=None) == (
        [rec.summary()], None)


def test_job_without_sources(store: Store) -> None:
    store.apply([job_row("j", 5.0, status="queued", started_at=None)])
    assert store.get_job("j") == {
        "job_id": "j", "status": "queued", "created_at": 5.0, "started_at": None,
        "finished_at": None, "progress": {"step": 0, "total": 5}, "error": None,
        "params": {"duration": 10}, "sources": [],
    }


def test_upserts_replace_rows(store: Store) -> None:
    """Job, source and segment rows are replaced by key, never duplicated."""
    rec = record()
    store.apply(rows_for(rec))
    rec.status, rec.step, rec.error = "completed", 6, None
    rec.sources[1].status, rec.sources[1].steps_done = "completed", 3
    rec.sources[0].segments[2] = {**rec.sources[0].segments[2], "bytes": 7, "end_reason": "end"}
    rec.sources[1].gaps.append({"start": 1.0, "end": 2.0, "reason": "ended"})
    store.apply(rows_for(rec))
    store.apply(rows_for(rec))
    assert store.get_job(rec.id) == rec.view()


def test_apply_is_one_transaction(store: Store) -> None:
    """A batch that fails part way leaves nothing behind; rows may precede their job's row."""
    with pytest.raises(TypeError):
        store.apply([job_row("a", 1.0), "not a row"])  # type: ignore[list-item]
    assert store.get_job("a") is None
    orphan = SourceRow(job_id="ghost", index=0, name="x", url="rtsp://h/", status="queued",
                       attempts=0, failures=0, steps_done=0, steps_total=1, errors=[], gaps=[])
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        store.apply([job_row("b", 2.0), orphan])
    assert store.get_job("b") is None
    event = EventRow(job_id="c", seq=0, at=3.0, type="started", text="hi", data={})
    store.apply([event, job_row("c", 3.0)])  # foreign keys are checked at commit
    assert store.events("c") == [{"type": "started", "text": "hi", "data": {}, "at": 3.0, "seq": 0}]
    store.apply([])


def test_events_in_seq_order_and_duplicates_ignored(store: Store) -> None:
    """Events come back in seq order whatever the write order; a replayed seq keeps the first."""
    store.apply([job_row("j", 1.0)])
    evs = [
        job_events.started("j"),
        job_events.progress("j", 1, 2, source="front"),
        job_events.interrupted("j", "shutdown"),
    ]
    rows = [EventRow(job_id=e.job_id, seq=i, at=e.at, type=e.type, text=e.text, data=e.data)
            for i, e in enumerate(evs)]
    store.apply([rows[2], rows[0]])
    store.apply([rows[1], dataclasses.replace(rows[0], text="replayed", data={"x": 1})])
    got = store.events("j")
    assert got == [{"type": e.type, "text": e.text, "data": e.data, "at": e.at, "seq": i}
                   for i, e in enumerate(evs)]
    rebuilt = [job_events.JobEvent(type=g["type"], job_id="j", text=g["text"], data=g["data"],
                                   at=g["at"]).as_json() for g in got]
    assert rebuilt == [e.as_json() for e in evs]
    assert store.events("missing") is None
    store.apply([job_row("quiet", 2.0)])
    assert store.events("quiet") == []


def _page_all(store: Store, limit: int, **filters: object) -> tuple[list[str], int]:
    ids: list[str] = []
    before = None
    pages = 0
    while True:
        page, before = store.list_jobs(limit=limit, before=before, **{  # type: ignore[arg-type]
            "status": None, "since": None, "until": None, **filters})
        pages += 1
        assert len(page) <= limit
        ids += [j["job_id"] for j in page]
        if before is None:
            return ids, pages
        assert len(page) == limit


STATUSES = ("completed", "failed", "cancelled", "interrupted", "running", "queued")


def test_list_jobs_pages_through_1000_jobs_exactly_once(store: Store) -> None:
    """Newest first, ties broken by id, every job once across pages, filters included; prints
    the time of paging on this backend."""
    rng = random.Random(7)
    jobs = [
        job_row(uuid.UUID(int=rng.getrandbits(128)).hex, 1_700_000_000.0 + (i // 4) * 0.5,
                status=STATUSES[i % len(STATUSES)])
        for i in range(1000)  # runs of 4 equal created_at
    ]
    rng.shuffle(jobs)
    t0 = time.perf_counter()
    store.apply(jobs)
    insert_s = time.perf_counter() - t0
    by_id = {j.job_id: j for j in jobs}
    expected = [j.job_id for j in sorted(jobs, key=lambda j: (j.created_at, j.job_id),
                                         reverse=True)]

    t0 = time.perf_counter()
    ids, pages = _page_all(store, 37)
    page_s = time.perf_counter() - t0
    assert ids == expected
    assert pages == 28

    t0 = time.perf_counter()
    failed, failed_pages = _page_all(store, 37, status="failed")
    status_s = time.perf_counter() - t0
    assert failed == [j for j in expected if by_id[j].status == "failed"]
    assert failed_pages == 5  # 167 failed jobs

    since, until = 1_700_000_010.0, 1_700_000_060.0
    window, _ = _page_all(store, 37, since=since, until=until)
    assert window == [j for j in expected if since <= by_id[j].created_at < until]
    assert len(window) == 400
    both, _ = _page_all(store, 7, status="running", since=since, until=until)
    assert both == [j for j in window if by_id[j].status == "running"]

    exact, exact_pages = _page_all(store, 40)  # 1000 = 25 * 40: the last full page ends it
    assert exact == expected
    assert exact_pages == 25
    print(
        f"\nstorage.list_jobs backend={store._backend.name} jobs=1000"
        f" insert={insert_s * 1000:.1f}ms"
        f" pages=28x37 total={page_s * 1000:.1f}ms per_page={page_s / pages * 1000:.2f}ms"
        f" status_filter=5x37 total={status_s * 1000:.1f}ms"
    )


def test_list_jobs_unknown_cursor(store: Store) -> None:
    with pytest.raises(RequestError) as info:
        store.list_jobs(status=None, since=None, until=None, limit=5, before="nope")
    assert (info.value.field, info.value.problem) == ("before", "unknown cursor")
    assert store.list_jobs(status=None, since=None, until=None, limit=5, before=None) == ([], None)


def test_interrupt_running(store: Store) -> None:
    """Queued and running jobs and their unfinished sources become interrupted; others stay."""
    run, queued, done = record("run"), record("queued"), record("done")
    run.status, run.finished_at = "running", None
    run.sources[0].status, run.sources[1].status = "completed", "running"
    queued.status, queued.finished_at, queued.started_at = "queued", None, None
    queued.created_at = run.created_at + 1
    for src in queued.sources:
        src.status = "queued"
    store.apply(rows_for(run) + rows_for(queued) + rows_for(done))
    assert store.running_jobs() == ["run", "queued"]  # what start-up recovers first
    assert store.interrupt_running("shutdown", 1_800_000_000.0) == ["run", "queued"]
    assert store.running_jobs() == []
    for rec in (run, queued):
        rec.status, rec.error, rec.finished_at = "interrupted", "shutdown", 1_800_000_000.0
    run.sources[1].status = "interrupted"
    queued.sources[0].status = queued.sources[1].status = "interrupted"
    assert store.get_job("run") == run.view()
    assert store.get_job("queued") == queued.view()
    assert store.get_job("done") == done.view()
    # each log ends with the event a drain would have written, its text the original API's
    (last,) = store.events("run")[-1:]
    assert (last["type"], last["text"], last["data"]) == (
        "interrupted", "Error with Job ID run: shutdown", {"reason": "shutdown"})
    assert store.interrupt_running("again", 1.0) == []


def test_delete_job(store: Store) -> None:
    """Deleting removes every row of the job, returns its segment paths, touches no other job."""
    a, b = record("a"), record("b")
    store.apply(rows_for(a) + rows_for(b))
    store.apply([EventRow(job_id="a", seq=0, at=1.0, type="started", text="x", data={})])
    assert store.delete_job("a") == [s["path"] for s in a.sources[0].segments]
    assert store.get_job("a") is None
    assert store.events("a") is None
    with store._backend.transaction() as tx:
        for table in ("sources", "segments", "events"):
            n = tx.execute(f"SELECT COUNT(*) FROM {table} WHERE job_id = ?", ("a",)).fetchone()
            assert n[0] == 0, table
    assert store.get_job("b") == b.view()
    assert store.delete_job("a") == []


def test_retention_queries(store: Store) -> None:
    """Only finished jobs count, oldest first; sizes are 64-bit sums, zero for no segments."""
    old, new = record("old"), record("new")
    old.finished_at, new.finished_at = 100.0, 200.0
    new.sources[0].segments = new.sources[0].segments[:1]
    store.apply(rows_for(new) + rows_for(old))
    store.apply([
        job_row("running", 50.0, status="running", finished_at=None),
        job_row("odd", 10.0, status="queued", finished_at=20.0),  # active: never retained
        job_row("empty", 10.0, status="cancelled", finished_at=150.0),
    ])
    assert store.jobs_finished_before(150.0) == ["old"]
    assert store.jobs_finished_before(1e12) == ["old", "empty", "new"]
    assert store.jobs_finished_before(0.0) == []
    sizes = store.segment_bytes_by_job()
    assert sizes == [("old", 2000 + 2**33, 100.0), ("empty", 0, 150.0), ("new", 1000, 200.0)]
    assert all(type(n) is int and type(t) is float for _, n, t in sizes)


def test_cameras_crud(store: Store) -> None:
    """Cameras keep their URL with credentials; upsert by name; delete says if it found one."""
    assert store.cameras() == []
    front = CameraRow(name="front", url=f"rtsp://admin:{SECRET}@10.0.0.5/main",
                      options={"rtsp_transport": "tcp"}, created_at=1.5)
    back = CameraRow(name="back", url="http://cam.local/live.m3u8", options={}, created_at=2.5)
    store.put_camera(front)
    store.put_camera(back)
    assert store.cameras() == [back, front]
    moved = dataclasses.replace(front, url=f"rtsp://admin:{SECRET}@10.0.0.6/sub", options={})
    store.put_camera(moved)
    assert store.cameras() == [back, moved]
    assert store.delete_camera("front") is True
    assert store.delete_camera("front") is False
    assert store.cameras() == [back]


def test_only_cameras_hold_credentials(store: Store) -> None:
    """The store keeps what it is given: redacted rows stay redacted in every table."""
    rec = record()
    assert SECRET in rec.sources[0].url
    store.apply(rows_for(rec))
    store.put_camera(CameraRow(name="c", url=f"rtsp://u:{SECRET}@h/", options={}, created_at=0.0))
    with store._backend.transaction() as tx:
        for table in ("jobs", "sources", "segments", "events"):
            for row in tx.execute(f"SELECT * FROM {table}").fetchall():
                assert SECRET not in repr(row), table
        assert SECRET in tx.execute("SELECT url FROM cameras").fetchone()[0]
    assert SECRET not in repr(store.get_job(rec.id))


def test_one_store_from_many_threads(store: Store) -> None:
    """One Store may be shared by worker threads: concurrent batches all land."""
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                store.apply([job_row(f"t{n}-{i}", float(i)),
                             EventRow(job_id=f"t{n}-{i}", seq=0, at=0.0, type="started",
                                      text=None, data={})])
                store.list_jobs(status=None, since=None, until=None, limit=5, before=None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    ids, _ = _page_all(store, 100)
    assert len(ids) == len(set(ids)) == 160


_V2_SEGMENT = """INSERT INTO segments
    (job_id, source_index, segment_index, path, start_time, start_seconds, duration, bytes,
    frames, keyframes, end_reason, format, codec) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"""


def _upgrade_from_v2(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = record()
    rows = rows_for(rec)
    with monkeypatch.context() as m:  # this program as it was at schema v2
        m.setattr(schema, "MIGRATIONS", schema.MIGRATIONS[:2])
        m.setattr(schema, "LATEST", 2)
        old = Store.open(database_url)
        try:
            assert old.schema_version() == 2
            old.apply([r for r in rows if not isinstance(r, SegmentRow)])
            with old._backend.transaction(write=True) as tx:  # v2 had no end_time to write
                for r in rows:
                    if isinstance(r, SegmentRow):
                        tx.execute(_V2_SEGMENT, (
                            r.job_id, r.source_index, r.index, r.path, r.start_time,
                            r.start_seconds, r.duration, r.bytes, r.frames, r.keyframes,
                            r.end_reason, r.format, r.codec,
                        ))
        finally:
            old.close()
    store = Store.open(database_url)
    try:
        assert store.schema_version() == 3
        for src in rec.sources:
            src.segments = [{**seg, "end_time": None} for seg in src.segments]
        assert sum(len(src.segments) for src in rec.sources) == 3
        assert store.get_job(rec.id) == rec.view()
        assert store.events(rec.id) == []
    finally:
        store.close()


async def test_v2_database_upgrades_with_null_end_time(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Migrating a v2 database (jobs, sources, segments stored) to v3 keeps every row as it was;
    segments stored before v3 show `end_time: null`, not a made-up time."""
    with trio.fail_after(30):
        await trio.to_thread.run_sync(
            _upgrade_from_v2, database_url, monkeypatch, abandon_on_cancel=True
        )


def test_segment_rows_keep_their_format(store: Store) -> None:
    store.apply(rows_for(record(), fmt="mkv"))
    with store._backend.transaction() as tx:
        assert {r[0] for r in tx.execute("SELECT format FROM segments").fetchall()} == {"mkv"}


def test_database_url(tmp_path: Path) -> None:
    assert database_url(None, tmp_path) == f"sqlite://{tmp_path.resolve()}/collector.db"
    assert database_url("", tmp_path).startswith("sqlite:///")
    assert database_url("postgres://u:p@h:5432/db", tmp_path) == "postgresql://u:p@h:5432/db"
    assert database_url("postgresql://u:p@h/db", tmp_path) == "postgresql://u:p@h/db"
    with pytest.raises(ValueError):
        Store.open("mysql://h/db")
    with pytest.raises(ValueError):
        Store.open("sqlite://relative.db")


def test_postgres_alias_opens(database_url: str) -> None:
    if not database_url.startswith("postgresql://"):
        pytest.skip("PostgreSQL only")
    store = Store.open("postgres://" + database_url.removeprefix("postgresql://"))
    try:
        assert store.schema_version() == LATEST
    finally:
        store.close()


def test_a_cursor_outlives_its_job(store: Store) -> None:
    """Paging on after the job that ended the last page was deleted (retention deletes the
    oldest jobs, where a newest-first walk is heading): the cursor was that job's id, and its
    deletion answered 400 "unknown cursor", leaving every older job out of reach."""
    store.apply([job_row(f"j{i}", float(i), status="completed") for i in range(6)])
    page, cursor = store.list_jobs(status=None, since=None, until=None, limit=2, before=None)
    assert [j["job_id"] for j in page] == ["j5", "j4"] and cursor is not None
    store.delete_job("j4")
    page, cursor = store.list_jobs(status=None, since=None, until=None, limit=2, before=cursor)
    assert [j["job_id"] for j in page] == ["j3", "j2"]
    # a bare job id, the cursor of older versions, is still taken while its job exists
    page, _ = store.list_jobs(status=None, since=None, until=None, limit=2, before="j2")
    assert [j["job_id"] for j in page] == ["j1", "j0"]


def test_the_owner_lock_key_names_the_history_not_the_credentials() -> None:
    """Two processes on one PostgreSQL history take the same advisory lock, however their
    URLs spell the password (a rotated one); another schema or database is another history."""
    from collector.storage.owner import lock_key

    base = "postgresql://app:{}@db.example:5432/collector"
    assert lock_key(base.format("old")) == lock_key(base.format("new"))
    assert -(2**63) <= lock_key(base.format("old")) < 2**63
    assert lock_key(base.format("x")) != lock_key(base.format("x") + "_other")
    assert lock_key(base.format("x")) != lock_key(
        base.format("x") + "?options=-csearch_path%3Dtenant2")
