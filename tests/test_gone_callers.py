"""Callers that go away before their answer: the service goes on.

A client that disconnects while its request waits for the supervisor cancels the request's task,
which closes its end of the reply channel. Until 2026-11-27 the supervisor's answer into that
closed channel raised `BrokenResourceError` in the supervisor itself, and the service died: a
client that sent `GET /jobs` and hung up at once was enough.
"""

from __future__ import annotations

from typing import Any

import trio

from actors.messages import (
    GetEvents,
    GetJob,
    GetStatistics,
    ListCameras,
    ListJobs,
    StartJob,
    SubscribeJob,
)
from collector.params import parse_collect
from tests.client import wait_job


async def test_requests_whose_callers_went_away_are_carried_out(collector, client, settings):
    """Each kind of request, sent with its reply channel's receiving end already closed: the ones
    answered at once and the ones answered from the database later. The job asked for is started
    and recorded all the same, a subscription nobody reads is not kept, and the service answers
    the next requests."""
    inbox = collector.supervisor.inbox

    def gone(make: Any) -> None:
        reply, receive = trio.open_memory_channel[Any](1)
        receive.close()
        inbox.send_nowait(make(reply))

    with trio.fail_after(30):
        live = (await client.post("/collect", json={"duration": 30, "segment_seconds": 1})
                ).json()["job_id"]
        request = parse_collect({"duration": 1, "segment_seconds": 1}, settings, {})
        gone(lambda r: StartJob(request=request, reply=r))
        for job_id in (live, "no-such-job"):  # in memory, and from the database
            gone(lambda r, j=job_id: GetJob(job_id=j, reply=r))
            gone(lambda r, j=job_id: GetEvents(job_id=j, reply=r))
            gone(lambda r, j=job_id: SubscribeJob(job_id=j, reply=r))
        gone(lambda r: ListJobs(status=None, since=None, until=None, limit=10, before=None,
                                reply=r))
        gone(lambda r: ListCameras(reply=r))
        gone(lambda r: GetStatistics(reply=r))

        assert (await client.get("/")).status_code == 200
        listed = (await client.get("/jobs")).json()["jobs"]
        assert len(listed) == 2  # the live job and the one whose caller went away
        [other] = [j["job_id"] for j in listed if j["job_id"] != live]
        assert (await wait_job(client, other))["status"] == "completed"
        assert collector.supervisor.statistics().websocket_subscribers == 0
        assert (await client.delete(f"/jobs/{live}")).status_code == 200
        assert (await wait_job(client, live))["status"] == "cancelled"


async def test_clients_that_hang_up_at_once_leave_the_service_running(collector):
    """End to end: `GET /jobs` (answered from the database, after a worker thread's read) from
    clients that close the connection right after sending it. Until 2026-11-27 the first of
    them took the service down; the socket then refused connections."""
    host, port = collector.url.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(30):
        for _ in range(20):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(b"GET /jobs?limit=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.aclose()
        await trio.sleep(0.5)  # the reads finish after their callers have gone
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = b""
            while not answer.endswith(b"}\n"):
                answer += await stream.receive_some()
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'\r\n\r\n{"message":"Camera Collector API is running!"}\n')
