"""How answers reach the client: at once, never waiting forever, and closed when they should be.

Three changes to how hypercorn (0.18) sends each piece of an answer (the status line and headers,
the body or a chunk of a download, each WebSocket message) and closes a connection:

**No scheduler pass when nothing waits.** hypercorn sends under a `trio.Lock` and with
`SocketStream.send_all`, and each yields to trio's scheduler even when nothing else waits, so an
HTTP answer took six scheduler passes and a WebSocket message two. While 100 cameras record, a
pass lasts up to 10-20 ms, and the segments of a server's cameras close together, so the last
progress message of a burst waited two passes per message before it: WebSocket delivery p99 was
77-229 ms (15-36 ms with this; BENCHMARKS.md, eighth session). Here a plain TCP connection writes
what the socket takes at once, in the sending task's step, when no other send of that connection
is under way: one non-blocking `write(2)`.

**A bound on a client that takes nothing.** hypercorn's send is shielded from cancellation (so
that a cancelled handler does not leave half a message) and has no timeout: a client that stops
reading a download or a WebSocket held its connection and tasks for good, and kept a SIGTERM from
ever finishing (the root nursery's cancel cannot reach a shielded send). What the socket does not
take at once is sent here, still shielded and in order behind the connection's lock, but a send
that makes no progress for `send_timeout_s` ends: the connection is closed and hypercorn told,
as for a client that went away. Progress is a write the socket takes, tried again every second
while we wait, since the kernel wakes a writer only once much of its buffer is free, which a
slow link or reader can take longer than the timeout to free (measured on loopback: a client
reading 10 KB/s was dropped within 1 s of a 1 s timeout when we waited for the wake-up). A
reader so slow that its kernel acknowledges nothing for the whole timeout (TCP reopens a window
in steps) is dropped like one that stopped: hence a default of 60 s, as nginx's
`send_timeout`. On TLS connections (the
service configures none) the bound is per piece instead. At the end of a shutdown,
`abort_sends()` ends every such send at once, and any begun after it (one process serves one
server).

**Closing what is to be closed.** An answer to `Connection: close` or to HTTP/1.0 ends with
closing the connection, which hypercorn does from the request's task after quart-trio has
cancelled it; the close was cancelled with it, and such a client (one that reads to the end,
as HTTP/1.0 ones do) waited for good. The close is shielded here.

As with the stock path, a cancelled task sends nothing and a message once begun is sent whole
(unless the connection is given up). What reaches the client is byte for byte the same.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import trio
from hypercorn.events import Closed, RawData
from hypercorn.trio.tcp_server import TCPServer

log = logging.getLogger(__name__)

_stock = TCPServer.protocol_send
_send_timeout_s = 60.0
_waiting: set[trio.CancelScope] = set()  # the sends now waiting for a client to take their rest
_aborted = False  # abort_sends() was called: a send that has to wait gives up at once
_RETRY_S = 1.0  # how often a waiting send tries again without the kernel's wake-up
_CLOSE_TIMEOUT_S = 5.0  # how long closing a connection may take


async def _protocol_send(self: Any, event: Any) -> None:
    if type(event) is Closed:
        # hypercorn closes a `Connection: close` (or HTTP/1.0) connection from the request's own
        # task, after quart-trio has cancelled it: the stock close then stops at its first
        # checkpoint and the client waits for an end that never comes. Shielded, it happens; it
        # does not wait for the client on a plain socket (a half-close and a close), and TLS's
        # goodbye is given a bound.
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _CLOSE_TIMEOUT_S):
            await _stock(self, event)
        return
    if type(event) is not RawData:  # Updated: hypercorn's own handling
        await _stock(self, event)
        return
    data: bytes | memoryview = event.data
    plain = type(self.stream) is trio.SocketStream
    if plain and not self.send_lock.locked():
        # As the stock path: a cancelled task sends nothing (this does not yield otherwise)
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            sent = os.write(self.stream.socket.fileno(), data)
        except OSError:  # a full buffer, or a broken connection reported below
            sent = 0
        if sent == len(data):
            return
        # The rest goes whole even if we are cancelled later: we are not now (checked above, and
        # cancellation only arrives between steps), the lock is free and taken in this same
        # step, and the rest is sent shielded.
        data = memoryview(data)[sent:] if sent else data
    await _send_rest(self, data, plain)


async def _send_rest(server: Any, data: bytes | memoryview, plain: bool) -> None:
    """The stock path's send (in order behind the lock, shielded), bounded by the client's
    progress; a send that ends without sending everything closes the connection."""
    async with server.send_lock:
        with trio.CancelScope(shield=True,
                              deadline=trio.current_time() + _send_timeout_s) as scope:
            _waiting.add(scope)
            if _aborted:
                scope.cancel()
            try:
                if plain:
                    await _write_all(server.stream.socket, data, scope)
                else:
                    await server.stream.send_all(data)
                return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                pass  # the client has gone
            finally:
                _waiting.discard(scope)
        if scope.cancelled_caught:
            log.info("http.client_stalled send_timeout_s=%g", _send_timeout_s)
            with trio.CancelScope(shield=True):  # hypercorn hears Closed even if we are cancelled
                await trio.aclose_forcefully(server.stream)  # does not wait for the client
        await server.protocol.handle(Closed())


async def _write_all(sock: trio.socket.SocketType, data: bytes | memoryview,
                     scope: trio.CancelScope) -> None:
    """Write `data` as the socket takes it; what the client takes moves `scope`'s deadline on."""
    view = memoryview(data)
    while view:
        try:
            sent = os.write(sock.fileno(), view)
        except BlockingIOError:
            sent = 0
        if sent:
            view = view[sent:]
            scope.deadline = trio.current_time() + _send_timeout_s
            continue
        # The kernel wakes a writer only once much of its buffer is free, which a slow reader
        # can take longer than the timeout to free: try again every second, so that any room
        # its reading makes counts
        with trio.move_on_after(min(_RETRY_S, _send_timeout_s / 4)):
            await trio.lowlevel.wait_writable(sock)


def abort_sends() -> None:
    """End every send waiting for a client, and any that would wait from now on (shutdown:
    past the grace, nothing waits longer)."""
    global _aborted
    _aborted = True
    for scope in list(_waiting):
        scope.cancel()


def install(send_timeout_s: float = 60.0) -> None:
    """Patch hypercorn's trio TCP server (idempotent; pyproject.toml pins the hypercorn whose
    `protocol_send` this replaces). `send_timeout_s`: how long a send may take nothing."""
    global _send_timeout_s, _aborted
    _send_timeout_s, _aborted = send_timeout_s, False
    TCPServer.protocol_send = _protocol_send  # type: ignore[method-assign]
