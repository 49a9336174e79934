"""Answers written straight to the socket (collector/http_send.py), on real sockets."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from hypercorn.events import RawData

from collector.http_send import _protocol_send, install


@pytest.fixture
async def pair() -> AsyncIterator[tuple[trio.SocketStream, socket.socket]]:
    """A trio stream (the server's side) and a plain blocking socket (the client's)."""
    ours, theirs = socket.socketpair()
    with theirs:
        async with trio.SocketStream(trio.socket.from_stdlib_socket(ours)) as stream:
            yield stream, theirs


def _server(stream: object) -> SimpleNamespace:
    """What `protocol_send` uses of hypercorn's TCPServer."""
    closed: list[object] = []

    async def handle(event: object) -> None:
        closed.append(event)

    return SimpleNamespace(stream=stream, send_lock=trio.Lock(),
                           protocol=SimpleNamespace(handle=handle), closed=closed)


def _read(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


async def test_what_the_socket_takes_goes_out_without_a_checkpoint(pair):
    """A send the socket takes at once is not a scheduler pass: it completes even inside a
    cancelled scope, where any checkpoint (the stock lock's, the stock send's) would raise."""
    stream, client = pair
    server = _server(stream)
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            scope.cancel()
            await _protocol_send(server, RawData(data=b"HTTP/1.1 200 OK\r\n\r\n"))
            await _protocol_send(server, RawData(data=b""))  # an answer's end: nothing
            await _protocol_send(server, RawData(data=b"body"))
        assert not scope.cancelled_caught
        assert _read(client, 23) == b"HTTP/1.1 200 OK\r\n\r\nbody"


async def test_what_the_socket_does_not_take_goes_the_stock_way_in_order(pair):
    """A full send buffer: the first part is written at once, the rest waits (stock path) until
    the client reads; every byte arrives, in order, and a later send queues behind it."""
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    big = bytes(range(256)) * 8192  # 2 MiB: more than the two buffers hold
    received: list[bytes] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_protocol_send, server, RawData(data=big))
            await trio.sleep(0.2)
            assert server.send_lock.locked()  # the rest waits on the stock path
            nursery.start_soon(_protocol_send, server, RawData(data=b"next"))
            received.append(await trio.to_thread.run_sync(_read, client, len(big) + 4))
    assert received == [big + b"next"]


async def test_a_send_waits_behind_one_under_way(pair):
    """While another send of the connection holds it (the stock path, waiting for room), a send
    does not jump ahead, even when the socket has room."""
    stream, client = pair
    server = _server(stream)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            await server.send_lock.acquire()  # a send under way
            nursery.start_soon(_protocol_send, server, RawData(data=b"second"))
            await trio.testing.wait_all_tasks_blocked()
            await stream.send_all(b"first ")  # what the holder sends
            server.send_lock.release()
        assert _read(client, 12) == b"first second"


async def test_a_broken_connection_is_reported_as_hypercorn_does(pair):
    """The client has gone: the stock path finds out and hands hypercorn `Closed`."""
    stream, client = pair
    server = _server(stream)
    client.close()
    with trio.fail_after(5):
        await _protocol_send(server, RawData(data=b"x" * 100_000))
    assert [type(e).__name__ for e in server.closed] == ["Closed"]


async def test_tls_streams_go_the_stock_way(pair):
    """Not a plain socket stream: the stock send (its checkpoint raises in a cancelled scope)."""
    stream, _ = pair
    server = _server(SimpleNamespace(send_all=stream.send_all))
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            scope.cancel()
            await _protocol_send(server, RawData(data=b"x"))
        assert scope.cancelled_caught


def test_install_patches_hypercorn_once():
    from hypercorn.trio.tcp_server import TCPServer

    assert install() and install()
    assert TCPServer.protocol_send is _protocol_send
