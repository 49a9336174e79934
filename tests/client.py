"""Real clients for tests: HTTP through httpx, WebSocket through wsproto over a trio stream."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)


@dataclass(frozen=True)
class WsTranscript:
    messages: list[str]
    code: int | None
    reason: str | None

    def json(self) -> list[dict[str, Any]]:
        return [json.loads(m) for m in self.messages]


async def read_ws(url: str) -> WsTranscript:
    """Read every text frame until the server closes; the caller sets the time ceiling.

    A minimal RFC 6455 client on wsproto over a trio TCP stream, so the test owns the socket's
    whole life (trio-websocket 0.12 leaks its socket when the server closes first).
    """
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    ws = WSConnection(ConnectionType.CLIENT)
    messages: list[str] = []
    text = ""
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        await stream.send_all(ws.send(Request(host=parts.netloc, target=target)))
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return WsTranscript(messages, None, "TCP closed without a close frame")
            ws.receive_data(data)
            for event in ws.events():
                match event:
                    case AcceptConnection():
                        pass
                    case RejectConnection():
                        return WsTranscript(messages, None, f"rejected {event.status_code}")
                    case TextMessage():
                        text += event.data
                        if event.message_finished:
                            messages.append(text)
                            text = ""
                    case Message():
                        raise AssertionError(f"unexpected binary frame {event!r}")
                    case Ping():
                        await stream.send_all(ws.send(event.response()))
                    case CloseConnection():
                        try:
                            await stream.send_all(ws.send(event.response()))
                        except trio.BrokenResourceError:
                            pass
                        return WsTranscript(messages, event.code, event.reason or None)


def ws_url(http_url: str, job_id: str, query: str = "") -> str:
    return http_url.replace("http://", "ws://", 1) + f"/ws/{job_id}" + (
        f"?{query}" if query else ""
    )


def expected_texts(job_id: str, total: int) -> list[str]:
    """The original API's exact sequence for a job that completes."""
    return [
        f"Collection started with Job ID: {job_id}",
        *[f"Progress: Step {k}/{total}" for k in range(1, total + 1)],
        f"Collection completed for Job ID: {job_id}",
    ]


async def wait_step(client: httpx.AsyncClient, job_id: str, step: int, *,
                    poll: float = 0.05) -> None:
    """Poll GET /jobs/{id} until the job has announced `step` steps."""
    while True:
        if (await client.get(f"/jobs/{job_id}")).json()["progress"]["step"] >= step:
            return
        await trio.sleep(poll)


async def wait_job(client: httpx.AsyncClient, job_id: str, *, poll: float = 0.2) -> dict[str, Any]:
    """Poll GET /jobs/{id} until the job is no longer queued or running."""
    while True:
        job = (await client.get(f"/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            return job
        await trio.sleep(poll)
