"""The original API, byte for byte, against a real hypercorn server and real WebSocket clients."""

from __future__ import annotations

import uuid
from pathlib import Path

import trio

from tests.client import expected_texts, read_ws, wait_job, ws_url
from tests.media.probe import count_frames, decode_errors, probe


async def test_health_exact_body(client):
    """GET / answers exactly the seed's JSON."""
    with trio.fail_after(10):
        r = await client.get("/")
    assert r.status_code == 200
    assert r.json() == {"message": "Camera Collector API is running!"}


async def test_bare_collect_records_demo_camera_in_five_steps(collector, client):
    """POST /collect with no body records the demo camera: 5 steps, exact texts, close 1000,
    five readable 2 s segments of 20 frames each, all listed by GET /jobs/{id}."""
    with trio.fail_after(30):
        r = await client.post("/collect")
        assert r.status_code == 200
        body = r.json()
        job_id = body["job_id"]
        assert uuid.UUID(job_id).version == 4
        assert body["message"] == f"Collection started with Job ID {job_id}"
        transcript = await read_ws(ws_url(collector.url, job_id))
    assert transcript.messages == expected_texts(job_id, 5)
    assert transcript.code == 1000

    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed"
    assert job["progress"] == {"step": 5, "total": 5}
    [source] = job["sources"]
    assert source["name"] == "demo" and source["status"] == "completed"
    segments = source["segments"]
    assert len(segments) == 5
    for seg in segments:
        path = Path(seg["path"])
        assert path.suffix == ".mp4" and (await trio.Path(path).stat()).st_size == seg["bytes"]
        assert count_frames(path) == seg["frames"] == 20
        assert abs(probe(path).duration - 2.0) < 0.11
        assert decode_errors(path) == ""
        assert_closed_in_time(seg)


async def test_late_subscriber_gets_full_replay(collector, client):
    """A subscriber that connects after the job ended still receives every message, in order."""
    with trio.fail_after(20):
        r = await client.post("/collect", json={"duration": 2, "segment_seconds": 1})
        job_id = r.json()["job_id"]
        job = await wait_job(client, job_id)
        assert job["status"] == "completed"
        late = await read_ws(ws_url(collector.url, job_id))
    assert late.messages == expected_texts(job_id, 2)
    assert late.code == 1000


async def test_two_subscribers_see_the_same_sequence(collector, client):
    """Subscribers joining at different moments of a running job all get the full sequence."""
    with trio.fail_after(20):
        job_id = (await client.post("/collect", json={"duration": 3, "segment_seconds": 1})).json()[
            "job_id"
        ]
        results: list = []

        async def reader(delay: float) -> None:
            await trio.sleep(delay)
            results.append(await read_ws(ws_url(collector.url, job_id)))

        async with trio.open_nursery() as nursery:
            for delay in (0, 1.5, 2.5):
                nursery.start_soon(reader, delay)
    assert [t.messages for t in results] == [expected_texts(job_id, 3)] * 3


async def test_unknown_job_websocket(collector):
    """An unknown job id gets the seed's error text, then a normal close."""
    job_id = str(uuid.uuid4())
    with trio.fail_after(10):
        transcript = await read_ws(ws_url(collector.url, job_id))
    assert transcript.messages == [f"Error with Job ID {job_id}: job not found"]
    assert transcript.code == 1000


def assert_closed_in_time(seg: dict) -> None:
    """`end_time` is when the collector closed the file: after it opened it (`start_time`), and
    about one segment later (cut at the next key frame; reads come in 0.4 s batches)."""
    assert isinstance(seg["end_time"], float)
    assert seg["start_time"] < seg["end_time"]
    assert abs(seg["end_time"] - seg["start_time"] - seg["duration"]) < 1.5


async def test_json_websocket_events(collector, client):
    """?format=json streams the same events as objects with a `type` field; each progress event's
    segment is the job view's, `end_time` included, and was closed before its step was announced."""
    with trio.fail_after(20):
        job_id = (await client.post("/collect", json={"duration": 2, "segment_seconds": 1})).json()[
            "job_id"
        ]
        transcript = await read_ws(ws_url(collector.url, job_id, "format=json"))
        job = (await client.get(f"/jobs/{job_id}")).json()
    events = transcript.json()
    assert [e["type"] for e in events] == ["started", "progress", "progress", "completed"]
    assert [e["message"] for e in events] == expected_texts(job_id, 2)
    assert [(e["step"], e["total"]) for e in events[1:3]] == [(1, 2), (2, 2)]
    assert events[1]["segment"]["frames"] == 10
    assert [e["segment"] for e in events[1:3]] == job["sources"][0]["segments"]
    for event in events[1:3]:
        assert_closed_in_time(event["segment"])
        assert event["segment"]["end_time"] <= event["at"]
    assert transcript.code == 1000


async def test_unknown_job_http(client):
    """GET /jobs/{unknown} is a 404 JSON naming the field."""
    with trio.fail_after(10):
        r = await client.get(f"/jobs/{uuid.uuid4()}")
    assert r.status_code == 404
    assert r.json() == {"error": "job not found", "field": "job_id"}
