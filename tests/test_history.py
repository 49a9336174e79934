"""Job history, control and the camera registry, in a real database (SQLite file, or PostgreSQL)."""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from tests.client import expected_texts, read_ws, wait_job, ws_url
from tests.media.probe import count_frames


@pytest.fixture
def settings(tmp_path, database_url):
    from collector.config import load_settings

    config = tmp_path / "collector.json"
    config.write_text(json.dumps({
        "default_duration_s": 2,
        "cameras": [{"name": "from-file", "url": "demo://testsrc"}],
    }))
    return load_settings(
        {}, host="127.0.0.1", port=0, data_dir=tmp_path / "data", database_url=database_url,
        config_file=str(config), housekeeping_interval_s=0.3,
    )


async def test_job_view_events_and_download(collector, client):
    """A finished job's record, its event log and its segment files are all served."""
    with trio.fail_after(20):
        job_id = (await client.post("/collect", json={"duration": 2, "segment_seconds": 1,
                                                       "streams": ["demo://testsrc"]})).json()["job_id"]
        await wait_job(client, job_id)
        events = (await client.get(f"/jobs/{job_id}/events")).json()["events"]
        job = (await client.get(f"/jobs/{job_id}")).json()
        seg = job["sources"][0]["segments"][1]
        url = f"/jobs/{job_id}/sources/0/segments/{seg['index']}"
        r = await client.get(url)
        missing = await client.get(f"/jobs/{job_id}/sources/0/segments/99")
    whole = await trio.Path(seg["path"]).read_bytes()
    assert [e["message"] for e in events] == expected_texts(job_id, 2)
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content == whole
    # no cache may keep a recording (Quart's default was "public, max-age=43200")
    assert r.headers["cache-control"] == "no-store" and "expires" not in r.headers
    assert r.headers["accept-ranges"] == "bytes"
    assert missing.status_code == 404 and missing.json()["field"] == "index"


async def test_download_by_byte_range(collector, client):
    """A player seeks with Range: one range gets 206 with exactly those bytes; a range past the
    end gets 416 naming the size; what a server may ignore (several ranges, an If-Range for
    another version, a malformed header) gets the whole file."""
    with trio.fail_after(20):
        job_id = (await client.post("/collect", json={"duration": 1, "segment_seconds": 1,
                                                       "streams": ["demo://testsrc"]})).json()["job_id"]
        await wait_job(client, job_id)
        seg = (await client.get(f"/jobs/{job_id}")).json()["sources"][0]["segments"][0]
        url = f"/jobs/{job_id}/sources/0/segments/{seg['index']}"
        whole = await trio.Path(seg["path"]).read_bytes()
        size = len(whole)
        etag = (await client.get(url)).headers["etag"]

        async def get(range_: str, **headers: str):  # as UTF-8 bytes: httpx sends them as is
            return await client.get(url, headers={"Range": range_.encode(), **headers})

        for asked, start, stop in [("bytes=100-1099", 100, 1100), ("bytes=100-", 100, size),
                                   ("bytes=-500", size - 500, size), ("bytes=0-0", 0, 1),
                                   (f"bytes={size - 10}-{size + 5000}", size - 10, size),
                                   (f"bytes=-{size + 1}", 0, size), ("BYTES = 5-9", 5, 10)]:
            r = await get(asked, **({"If-Range": etag} if start == 100 else {}))
            assert r.status_code == 206, asked
            assert r.headers["content-range"] == f"bytes {start}-{stop - 1}/{size}", asked
            assert r.content == whole[start:stop], asked
            assert int(r.headers["content-length"]) == stop - start, asked
        for asked in [f"bytes={size}-", f"bytes={size + 7}-{size + 9}", "bytes=-0"]:
            r = await get(asked)
            assert r.status_code == 416, asked
            assert r.headers["content-range"] == f"bytes */{size}"
            assert r.json() == {"error": f"no byte of the range is in the file ({size} bytes)",
                                "field": "Range"}
        for asked, extra in [("bytes=0-9,20-29", {}), ("bytes=9-0", {}), ("items=0-9", {}),
                             ("bytes=a-b", {}), ("bytes=٣-9", {}),
                             ("bytes=0-9", {"If-Range": '"another-version"'})]:
            r = await get(asked, **extra)
            assert r.status_code == 200 and r.content == whole, asked


async def test_camera_registry(collector, client):
    """Cameras from the file and the API: credentials stored but never shown; `cameras: [...]`
    and the bare call use them; unknown names are refused; DELETE removes."""
    with trio.fail_after(30):
        r = await client.post("/cameras", json={"name": "yard", "url": "demo://testsrc"})
        assert r.status_code == 201
        secret = await client.post(
            "/cameras", json={"name": "gate", "url": "rtsp://admin:Pa55-S3cret@127.0.0.1:9/gate"}
        )
        assert secret.json()["url"] == "rtsp://***@127.0.0.1:9/gate"
        bad = await client.post("/cameras", json={"name": "x", "url": "file:///etc/passwd"})
        assert bad.status_code == 400 and bad.json()["field"] == "url"
        listing = (await client.get("/cameras")).text
        assert "S3cret" not in listing and '"from-file"' in listing
        assert (await client.delete("/cameras/gate")).status_code == 200
        assert (await client.delete("/cameras/gate")).status_code == 404
        named = (await client.post("/collect", json={"cameras": ["yard"], "duration": 1,
                                                     "segment_seconds": 1})).json()["job_id"]
        bare = (await client.post("/collect")).json()["job_id"]
        named_job, bare_job = await wait_job(client, named), await wait_job(client, bare)
    assert [s["name"] for s in named_job["sources"]] == ["yard"]
    assert sorted(s["name"] for s in bare_job["sources"]) == ["from-file", "yard"]
    assert bare_job["status"] == "completed"
    # two cameras, 2 s default from the file, 2 s segments
    assert bare_job["progress"]["total"] == 2


async def test_purge_removes_files_and_rows(collector, client):
    """DELETE ?purge=true on a finished job removes its files and its rows together."""
    with trio.fail_after(20):
        job_id = (
            await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
        ).json()["job_id"]
        job = await wait_job(client, job_id)
        path = Path(job["sources"][0]["segments"][0]["path"])
        assert await trio.Path(path).exists()
        r = await client.delete(f"/jobs/{job_id}", params={"purge": "true"})
        assert r.status_code == 200
        assert (await client.get(f"/jobs/{job_id}")).status_code == 404
        assert (await client.get(f"/jobs/{job_id}/events")).status_code == 404
    assert not await trio.Path(path).exists() and not await trio.Path(path.parent.parent).exists()


async def test_disk_guard(collector, client, monkeypatch):
    """Below the free-space floor: new jobs get 507, running jobs stop cleanly with the reason."""
    import shutil

    real = shutil.disk_usage
    with trio.fail_after(20):
        job_id = (
            await client.post("/collect", json={"duration": 20, "segment_seconds": 1})
        ).json()["job_id"]
        await trio.sleep(2.5)
        monkeypatch.setattr(
            "actors.supervisor.shutil.disk_usage",
            lambda p: real(p)._replace(free=1024),
        )
        job = await wait_job(client, job_id)
        refused = await client.post("/collect")
    assert job["status"] == "failed" and job["error"].startswith("insufficient disk space")
    assert refused.status_code == 507 and refused.json()["field"] == "data_dir"
    for seg in job["sources"][0]["segments"]:
        assert count_frames(Path(seg["path"])) == seg["frames"]


@asynccontextmanager
async def collector_with(tmp_path: Path, database_url: str, **overrides: object):
    """An in-process collector with settings overrides, and an HTTP client to it."""
    import functools

    import httpx

    from collector.config import load_settings
    from collector.server import serve

    settings = load_settings({}, host="127.0.0.1", port=0, data_dir=tmp_path / "data",
                             database_url=database_url, housekeeping_interval_s=0.3, **overrides)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        running = await nursery.start(functools.partial(serve, settings, stop=stop))
        async with httpx.AsyncClient(base_url=running.url) as client:
            yield client
        stop.set()


async def test_retention_by_size(tmp_path, database_url):
    """Retention by total size deletes the oldest finished jobs, files and rows, first."""
    async with collector_with(tmp_path, database_url, retention_max_bytes=150_000) as client:
        with trio.fail_after(30):
            ids = []
            for _ in range(3):
                job_id = (
                    await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
                ).json()["job_id"]
                await wait_job(client, job_id)
                ids.append(job_id)
            # polls the service over HTTP from outside: there is no in-process Event to wait on
            while (await client.get(f"/jobs/{ids[0]}")).status_code != 404:  # noqa: ASYNC110
                await trio.sleep(0.2)
            newest = await client.get(f"/jobs/{ids[-1]}")
    assert newest.status_code == 200
    assert not (tmp_path / "data" / "jobs" / ids[0]).exists()


async def test_restart_after_sigkill(tmp_path, database_url, nursery):
    """Run jobs on the real process, SIGKILL it mid-job, start it again on the same data: the
    finished job is intact (record, segments, events, WebSocket replay), the killed one is
    `interrupted` and its files are readable; the release command migrates the same database."""
    import functools
    import subprocess
    import sys

    import httpx

    from tests.test_process import procfile_command, start_process

    env = {"DATABASE_URL": database_url} if database_url else {}
    first = await start_process(tmp_path, nursery, **env)
    base = f"http://127.0.0.1:{first.port}"
    with trio.fail_after(40):
        async with httpx.AsyncClient(base_url=base) as client:
            done_id = (
                await client.post("/collect", json={"duration": 2, "segment_seconds": 1})
            ).json()["job_id"]
            done = await wait_job(client, done_id)
            killed_id = (
                await client.post("/collect", json={"duration": 30, "segment_seconds": 1})
            ).json()["job_id"]
            await trio.sleep(3.5)
        first.proc.kill()
        await first.proc.wait()
        # A segment the kill left open, readable up to its last fragment, made deterministic: the
        # kill's own open segment often holds no whole fragment yet. Two thirds of a closed one.
        folder = tmp_path / "data" / "jobs" / killed_id / "demo"  # the bare call's camera
        whole = (folder / "segment-00001.mp4").read_bytes()
        planted = folder / "segment-00099.mp4"
        planted.write_bytes(whole[: len(whole) * 2 // 3])

        release = procfile_command("release")
        migrated = await trio.to_thread.run_sync(functools.partial(
            subprocess.run, release, cwd=tmp_path, capture_output=True, text=True, env={
                **__import__("os").environ, "COLLECTOR_DATA_DIR": str(tmp_path / "data"), **env,
                "PATH": f"{Path(sys.executable).parent}:{__import__('os').environ['PATH']}",
            },
        ))
        assert migrated.returncode == 0, migrated.stderr

        second = await start_process(tmp_path, nursery, **env)
        base = f"http://127.0.0.1:{second.port}"
        async with httpx.AsyncClient(base_url=base) as client:
            again = (await client.get(f"/jobs/{done_id}")).json()
            killed = (await client.get(f"/jobs/{killed_id}")).json()
            listing = (await client.get("/jobs")).json()["jobs"]
        replay = await read_ws(ws_url(base, done_id))
        killed_text = await read_ws(ws_url(base, killed_id))
        killed_json = await read_ws(ws_url(base, killed_id, "format=json"))
        second.proc.kill()
        await second.proc.wait()
    assert again == done
    assert all(isinstance(s["end_time"], float) for s in again["sources"][0]["segments"])
    assert replay.messages == expected_texts(done_id, 2) and replay.code == 1000
    assert killed["status"] == "interrupted"
    assert killed["error"] == "the collector stopped while the job was running"
    # its replay ends: the event a drain would have written, then a normal close (it was a 1008
    # "subscriber too slow; reconnect to resume", which sent clients back for ever)
    assert killed_text.messages[0] == f"Collection started with Job ID: {killed_id}"
    assert killed_text.messages[1:-1] == [f"Progress: Step {i}/30"
                                          for i in range(1, len(killed_text.messages) - 1)]
    # ...ending as the original API's sequences end: with an error text
    assert killed_text.messages[-1] == (f"Error with Job ID {killed_id}: the collector stopped "
                                        "while the job was running")
    assert killed_text.code == 1000
    assert killed_text.reason == "interrupted: the collector stopped while the job was running"
    last = json.loads(killed_json.messages[-1])
    assert last["type"] == "interrupted"
    assert last["reason"] == "the collector stopped while the job was running"
    assert killed_json.code == 1000
    assert [j["job_id"] for j in listing] == [killed_id, done_id]
    files = sorted(f for f in folder.glob("segment-*.mp4") if f != planted)
    assert len(files) >= 2
    frames = [count_frames(f) for f in files]  # each opens in ffprobe
    assert all(n > 0 for n in frames[:-1])  # the newest may have been opened just before the kill
    # Every file with a frame is listed, so downloadable: those the kill left open too, described
    # from their own packets (they were on disk but in no record)
    listed = {s["index"]: s for s in killed["sources"][0]["segments"]}
    on_disk = {int(f.stem.removeprefix("segment-")): n for f, n in zip(files, frames, strict=True)}
    on_disk[99] = count_frames(planted)
    assert 0 < on_disk[99] < on_disk[1]
    assert set(listed) == {i for i, n in on_disk.items() if n > 0}
    crashed = sorted(i for i, s in listed.items() if s["end_reason"] == "crash")
    assert crashed[-1] == 99 and crashed == sorted(listed)[len(listed) - len(crashed):]
    for i in crashed:
        assert listed[i]["frames"] == on_disk[i] and listed[i]["duration"] > 0
        assert listed[i]["codec"] == "h264" and listed[i]["format"] == "mp4"
        assert listed[i]["bytes"] == (folder / f"segment-{i:05d}.mp4").stat().st_size
    before = [s for i, s in sorted(listed.items()) if i != 99][-1]
    assert listed[99]["start_seconds"] == round(before["start_seconds"] + before["duration"], 6)
    recorded = killed["sources"][0]["segments"]
    assert len(recorded) >= 2 and all([await trio.Path(s["path"]).exists() for s in recorded])


async def test_thousand_jobs_page_exactly_once(collector, client, settings):
    """1,000 stored jobs (some created at the same instant): GET /jobs pages through every one
    exactly once, newest first, and the status filter pages the same way."""
    from collector.storage import JobRow, Store, database_url

    store = Store.open(database_url(settings.database_url or None, Path(settings.data_dir)))
    rows = [
        JobRow(job_id=f"job-{i:04d}", created_at=1_000_000 + i // 4,
               status="completed" if i % 3 else "failed",
               started_at=None, finished_at=None, step=0, total=1, error=None, params={})
        for i in range(1000)
    ]
    await trio.to_thread.run_sync(store.apply, rows)
    store.close()
    with trio.fail_after(60):
        for status, expected in ((None, 1000), ("failed", 334)):
            seen, cursor = [], None
            while True:
                params = {"limit": 37, **({"before": cursor} if cursor else {}),
                          **({"status": status} if status else {})}
                page = (await client.get("/jobs", params=params)).json()
                seen += [j["job_id"] for j in page["jobs"]]
                if (cursor := page["next"]) is None:
                    break
            assert len(seen) == len(set(seen)) == expected
            created = [int(s[4:]) // 4 for s in seen]
            assert created == sorted(created, reverse=True)


async def test_retention_by_age(tmp_path, database_url):
    """Retention by age deletes a finished job's files and rows once it is older than the limit."""
    async with collector_with(tmp_path, database_url, retention_max_age_s=1.0) as client:
        with trio.fail_after(20):
            job_id = (
                await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
            ).json()["job_id"]
            job = await wait_job(client, job_id)
            folder = Path(job["sources"][0]["segments"][0]["path"]).parent.parent
            assert folder.exists()
            # polls the service over HTTP from outside: there is no in-process Event to wait on
            while (await client.get(f"/jobs/{job_id}")).status_code != 404:  # noqa: ASYNC110
                await trio.sleep(0.2)
    assert not folder.exists()


async def test_the_registry_follows_the_database(collector, client, monkeypatch):
    """A camera the database does not take is not registered (a job cannot use it, as after a
    restart it would be gone), and one the database does not delete stays registered."""
    from collector.storage import Store

    def fail(*args):
        raise OSError(5, "Input/output error")

    with trio.fail_after(20):
        assert (await client.post("/cameras", json={"name": "kept",
                                                     "url": "demo://testsrc"})).status_code == 201
        monkeypatch.setattr(Store, "put_camera", fail)
        monkeypatch.setattr(Store, "delete_camera", fail)
        put = await client.post("/cameras", json={"name": "lost", "url": "demo://testsrc"})
        deleted = await client.delete("/cameras/kept")
        names = [c["name"] for c in (await client.get("/cameras")).json()["cameras"]]
        job = await client.post("/collect", json={"cameras": ["lost"]})
    assert put.status_code == 500 and put.json()["field"] == "server"
    assert deleted.status_code == 500 and deleted.json()["field"] == "server"
    assert "lost" not in names and "kept" in names
    assert job.status_code == 400 and job.json() == {"error": "unknown camera 'lost'",
                                                     "field": "cameras[0]"}


async def test_events_read_the_same_after_a_restart(tmp_path, database_url):
    """`GET /jobs/{id}/events` answers a job in memory and a stored one (after a restart, or
    once newer jobs pushed it out of memory) in the same shape: it gave `{type, text, data, at,
    seq}` rows for a stored job."""
    with trio.fail_after(30):
        async with collector_with(tmp_path, database_url) as client:
            job_id = (await client.post("/collect", json={
                "streams": ["demo://testsrc"], "duration": 2, "segment_seconds": 1,
            })).json()["job_id"]
            await wait_job(client, job_id)
            live = (await client.get(f"/jobs/{job_id}/events")).json()["events"]
        async with collector_with(tmp_path, database_url) as client:
            stored = (await client.get(f"/jobs/{job_id}/events")).json()["events"]
    assert [e["type"] for e in live] == ["started", "progress", "progress", "completed"]
    assert live[1]["message"] == "Progress: Step 1/2" and live[1]["segment"]["index"] == 1
    assert stored == live


async def test_one_process_per_data_directory(settings, nursery):
    """A second collector on the same data directory (or PostgreSQL history) waits for the
    first to stop (a restart, a deploy that starts the new process before the old one has
    drained) and then serves; while the first keeps serving, it gives up. (It marked the first
    one's live jobs `interrupted`, and their event logs then lost events to clashing sequence
    numbers.)"""
    import dataclasses
    import functools

    import httpx

    from collector.server import serve
    from collector.storage.owner import DatabaseInUse

    settings = dataclasses.replace(settings, graceful_timeout_s=0.5)  # a second waits 2.5 s
    stop_first = trio.Event()
    first = await nursery.start(functools.partial(serve, settings, stop=stop_first))
    async with httpx.AsyncClient(base_url=first.url) as client:
        job_id = (await client.post("/collect", json={"duration": 30})).json()["job_id"]
        with trio.fail_after(10):
            started = trio.current_time()
            with pytest.raises(DatabaseInUse, match="another collector process is serving"):
                await serve(settings)
            assert trio.current_time() - started >= 2.5
            # stopped while it waits (SIGTERM: a deploy gave up on it), it returns at once
            # without serving; the signal's default action used to kill it
            stop_waiting = trio.Event()
            async with trio.open_nursery() as waiter:
                waiter.start_soon(functools.partial(serve, settings, stop=stop_waiting))
                await trio.sleep(0.5)
                stopped_at = trio.current_time()
                stop_waiting.set()
            assert trio.current_time() - stopped_at < 0.5
            assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "running"
    with trio.fail_after(20):
        stop_second = trio.Event()
        stop_first.set()  # the first drains and exits while the second waits for its lock
        async with trio.open_nursery() as inner:
            second = await inner.start(functools.partial(serve, settings, stop=stop_second))
            async with httpx.AsyncClient(base_url=second.url) as client:
                job = (await client.get(f"/jobs/{job_id}")).json()
            stop_second.set()
    assert job["status"] == "interrupted"
