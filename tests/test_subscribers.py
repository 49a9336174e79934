"""Many WebSocket subscribers, and ones that misbehave, never disturb a job."""

from __future__ import annotations

import trio

from tests.client import expected_texts, read_ws, wait_job, ws_url


async def test_500_subscribers_all_get_the_full_sequence(collector, client):
    """500 concurrent subscribers on one job each receive every message in order and a clean
    close; afterwards no subscriber is left registered."""
    with trio.fail_after(60):
        job_id = (await client.post("/collect", json={"duration": 3, "segment_seconds": 1})).json()[
            "job_id"
        ]
        transcripts: list = []

        async def reader() -> None:
            transcripts.append(await read_ws(ws_url(collector.url, job_id)))

        async with trio.open_nursery() as nursery:
            for _ in range(500):
                nursery.start_soon(reader)
    assert len(transcripts) == 500
    expected = expected_texts(job_id, 3)
    assert all(t.messages == expected and t.code == 1000 for t in transcripts)
    assert collector.supervisor.statistics().websocket_subscribers == 0


async def test_vanishing_client_leaks_nothing(collector, client):
    """Clients that disconnect mid-stream (TCP closed without a close frame) are forgotten, and
    the job completes on time for the subscriber that stays."""
    with trio.fail_after(30):
        job_id = (await client.post("/collect", json={"duration": 3, "segment_seconds": 1})).json()[
            "job_id"
        ]
        for _ in range(20):
            with trio.move_on_after(0.05):
                await read_ws(ws_url(collector.url, job_id))  # cancelled: socket closed abruptly
        await trio.sleep(0.5)
        assert collector.supervisor.statistics().websocket_subscribers == 0
        transcript = await read_ws(ws_url(collector.url, job_id))
        job = await wait_job(client, job_id)
    assert transcript.messages == expected_texts(job_id, 3)
    assert job["status"] == "completed"
    assert collector.supervisor.statistics().websocket_subscribers == 0
