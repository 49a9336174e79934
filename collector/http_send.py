"""Answers written straight to the socket: hypercorn's sends without their scheduler passes.

hypercorn (0.18) sends each piece of an answer (the status line and headers, the body, its
end; each WebSocket message) under a `trio.Lock` and with `SocketStream.send_all`. Each of those
yields to trio's scheduler even when nothing else waits, so an HTTP answer took six scheduler
passes and a WebSocket message two. While 100 cameras record, a pass lasts up to 10-20 ms (the
RTSP read rounds), and the segments of a server's cameras close together, so the last progress
message of a burst waited for two passes per message before it: WebSocket delivery p99 was
77-229 ms (15-36 ms with this; BENCHMARKS.md, eighth session).

`install()` makes every plain TCP connection write what the socket takes at once, in the sending
task's step, when no other send of that connection is under way; it is one non-blocking
`write(2)`. Whatever the socket does not take (a full send buffer: a large download, a slow
reader), and every error, goes the stock way, which then waits, reports a broken connection
as hypercorn does, and keeps the order, since the lock is free and taken without a pass in
between. As with the stock path, a cancelled task sends nothing and a message once begun is
sent whole. TLS connections always go the stock way. What reaches the client is byte for byte
the same.
"""

from __future__ import annotations

import os
from typing import Any

import trio
from hypercorn.events import RawData
from hypercorn.trio.tcp_server import TCPServer

_stock = TCPServer.protocol_send


async def _protocol_send(self: Any, event: Any) -> None:
    if (type(event) is RawData and type(self.stream) is trio.SocketStream
            and not self.send_lock.locked()):
        # As the stock path: a cancelled task sends nothing (this does not yield otherwise)
        await trio.lowlevel.checkpoint_if_cancelled()
        data = event.data
        try:
            sent = os.write(self.stream.socket.fileno(), data)
        except OSError:  # a full buffer, or a broken connection the stock path reports
            sent = 0
        if sent == len(data):
            return
        # The rest goes whole even if we are cancelled later: we are not now (checked above, and
        # cancellation only arrives between steps), the stock path takes the free lock in this
        # same step, and its send is shielded.
        event = RawData(data=memoryview(data)[sent:]) if sent else event
    await _stock(self, event)


def install() -> None:
    """Patch hypercorn's trio TCP server (idempotent; pyproject.toml pins the hypercorn whose
    `protocol_send` this replaces)."""
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
