"""Job control and access: cancel, listing, bearer token."""

from __future__ import annotations

from pathlib import Path

import trio

from tests.client import read_ws, wait_job, wait_step, ws_url
from tests.media.misbehaving import serve_pausing_http
from tests.media.probe import count_frames


async def test_cancel_keeps_finished_segments(collector, client):
    """DELETE mid-job: the WebSocket ends with `cancelled`, status is cancelled, and every segment
    written so far (including the one open at the time) is a valid file."""
    with trio.fail_after(30):
        job_id = (
            await client.post("/collect", json={"duration": 20, "segment_seconds": 1})
        ).json()["job_id"]
        result = []

        async def watch() -> None:
            result.append(await read_ws(ws_url(collector.url, job_id)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(3.5)
            r = await client.delete(f"/jobs/{job_id}")
            # answered once the job has stopped: it said "running" while it was stopping
            assert r.status_code == 200 and r.json()["status"] == "cancelled"
        job = await wait_job(client, job_id)
    [transcript] = result
    assert transcript.messages[-1] == f"Error with Job ID {job_id}: cancelled"
    assert transcript.code == 1000
    assert job["status"] == "cancelled"
    segments = job["sources"][0]["segments"]
    assert len(segments) >= 3
    assert segments[-1]["end_reason"] == "stopped"
    for seg in segments:
        assert count_frames(Path(seg["path"])) == seg["frames"] > 0
    steps = [m for m in transcript.messages if m.startswith("Progress")]
    assert steps == [f"Progress: Step {k}/20" for k in range(1, len(steps) + 1)]
    # cancelling again is harmless and changes nothing
    again = await client.delete(f"/jobs/{job_id}")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


async def test_list_jobs_pagination_and_filter(collector, client):
    """GET /jobs pages newest first with a cursor, each job exactly once; status filters."""
    with trio.fail_after(30):
        ids = [
            (
                await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
            ).json()["job_id"]
            for _ in range(5)
        ]
        for job_id in ids:
            await wait_job(client, job_id)
        seen, cursor = [], None
        while True:
            params = {"limit": 2, **({"before": cursor} if cursor else {})}
            page = (await client.get("/jobs", params=params)).json()
            seen += [j["job_id"] for j in page["jobs"]]
            cursor = page["next"]
            if cursor is None:
                break
        completed = (await client.get("/jobs", params={"status": "completed"})).json()["jobs"]
        failed = (await client.get("/jobs", params={"status": "failed"})).json()["jobs"]
    assert seen == list(reversed(ids))
    assert len(completed) == 5 and failed == []



async def test_cancel_while_the_cameras_thread_holds_the_recorder(collector, client, media_ts):
    """DELETE while an HTTP file is being recorded by the camera's reading thread with the job's
    lent recorder (the server holds the file halfway, so the thread sits in FFmpeg's read): the
    job takes its recorder back, announces what the thread wrote and closes the open segment, so
    every segment is a valid file and the job is cancelled."""
    size = media_ts.stat().st_size
    hold = trio.Event()  # never set: the file stays held until the server is stopped
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_pausing_http, media_ts,
                                   [(size * 5 // 12, 0.3), (size // 2, hold)])
        with trio.fail_after(30):
            job_id = (await client.post("/collect", json={
                "streams": [f"http://127.0.0.1:{port}/clip.ts"], "duration": 10,
                "segment_seconds": 2,
            })).json()["job_id"]
            await wait_step(client, job_id, 1)  # the thread's first batches were announced
            assert (await client.delete(f"/jobs/{job_id}")).status_code == 200
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert job["status"] == "cancelled"
    segments = job["sources"][0]["segments"]
    assert len(segments) >= 2
    assert segments[-1]["end_reason"] == "stopped"
    for seg in segments:
        assert count_frames(Path(seg["path"])) == seg["frames"] > 0


async def test_no_job_starts_once_the_service_drains(collector, client):
    """Shutdown drains the supervisor before HTTP stops: a POST /collect in between is refused
    with 503 (it used to start a job that was cut short at once and ended as an internal
    error), and nothing is created."""
    from actors.messages import Drain, ask

    with trio.fail_after(30):
        job_id = (await client.post("/collect", json={"duration": 20, "segment_seconds": 1})
                  ).json()["job_id"]
        stopped = await ask(collector.supervisor.inbox,
                            lambda reply: Drain(reason="shutdown", reply=reply))
        assert stopped == 1
        r = await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
        assert r.status_code == 503
        assert r.json() == {"error": "the service is shutting down; try again later",
                            "field": "jobs"}
        assert [j["job_id"] for j in (await client.get("/jobs")).json()["jobs"]] == [job_id]
        assert (await client.get(f"/jobs/{job_id}")).json()["status"] == "interrupted"
