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


async def test_a_client_that_talks_then_vanishes_leaks_nothing(collector, client):
    """A client may send frames (an application ping): they are read and dropped, so one that
    sent more than the ASGI queues hold (10 + 10) and then vanished is still noticed and
    forgotten. Until 2026-11-27 its connection and subscription stayed until shutdown."""
    from urllib.parse import urlsplit

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    with trio.fail_after(30):
        job_id = (await client.post("/collect", json={"duration": 20, "segment_seconds": 1})
                  ).json()["job_id"]
        parts = urlsplit(ws_url(collector.url, job_id))
        ws = WSConnection(ConnectionType.CLIENT)
        stream = await trio.open_tcp_stream(parts.hostname, parts.port)
        async with stream:
            await stream.send_all(ws.send(Request(host=parts.netloc, target=parts.path)))
            accepted = False
            while not accepted:
                ws.receive_data(await stream.receive_some(65536))
                accepted = any(isinstance(e, AcceptConnection) for e in ws.events())
            for i in range(40):
                await stream.send_all(ws.send(TextMessage(data=f"ping {i}")))
            await trio.sleep(0.3)
            assert collector.supervisor.statistics().websocket_subscribers == 1
        # TCP closed without a close frame: forgotten within 5 s
        for _ in range(100):
            if collector.supervisor.statistics().websocket_subscribers == 0:
                break
            await trio.sleep(0.05)
        assert collector.supervisor.statistics().websocket_subscribers == 0
        assert (await client.delete(f"/jobs/{job_id}")).status_code == 200
        assert (await wait_job(client, job_id))["status"] == "cancelled"


async def test_subscribers_keep_up_with_a_file_read_faster_than_real_time(settings, nursery,
                                                                          media_ts):
    """A file is read at hundreds of times real time and its steps come in bursts. Subscribers
    that read promptly get the whole sequence and a normal close, whatever the burst: they were
    closed with 1008 "too slow" once more events queued than `ws_buffer` (2 here, to make the
    burst certain; 256 by default, which a 20-minute file's 2400 steps overran)."""
    import dataclasses
    import functools

    import httpx

    from collector.server import serve
    from tests.media.servers import serve_http

    stop = trio.Event()
    running = await nursery.start(functools.partial(
        serve, dataclasses.replace(settings, ws_buffer=2), stop=stop))
    async with trio.open_nursery() as servers, httpx.AsyncClient(base_url=running.url) as client:
        http = await servers.start(serve_http, media_ts.parent)
        with trio.fail_after(30):
            job_id = (await client.post("/collect", json={
                "streams": [http.url(media_ts)], "duration": 12, "segment_seconds": 2,
            })).json()["job_id"]
            transcripts: list = []

            async def reader(query: str) -> None:
                transcripts.append(await read_ws(ws_url(running.url, job_id, query)))

            async with trio.open_nursery() as readers:
                for query in ("", "", "format=json"):
                    readers.start_soon(reader, query)
        servers.cancel_scope.cancel()
    stop.set()
    assert all(t.code == 1000 for t in transcripts), [(t.code, t.reason) for t in transcripts]
    texts = [t.messages for t in transcripts if not t.messages[0].startswith("{")]
    assert texts == [expected_texts(job_id, 6)] * 2
    (json_events,) = [t.messages for t in transcripts if t.messages[0].startswith("{")]
    assert len(json_events) == 8
