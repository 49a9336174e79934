"""Answers written straight to the socket (collector/http_send.py), on real sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import pytest
import trio
import trio.testing
from hypercorn.events import RawData

from collector import http_send
from collector.http_send import _protocol_send, abort_sends, install


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """The module's state as a newly installed server has it: a service stopped earlier in the
    same test process has called `abort_sends()`."""
    monkeypatch.setattr(http_send, "_aborted", False)
    monkeypatch.setattr(http_send, "_send_timeout_s", 60.0)


@pytest.fixture
async def pair() -> AsyncIterator[tuple[trio.SocketStream, socket.socket]]:
    """A trio stream (the server's side) and a plain blocking socket (the client's)."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(5)  # a read that would hang fails instead
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
    """`n` bytes, or fewer if the peer closes; a read that times out closes the socket, so that
    a send still waiting for room fails instead of hanging the test."""
    data = b""
    try:
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        sock.close()
        raise
    return data


async def test_what_the_socket_takes_goes_out_without_a_scheduler_pass(pair):
    """A send the socket takes at once does not yield: a task made runnable before it has not
    run when it returns (the stock lock and the stock send would each have let it)."""
    stream, client = pair
    server = _server(stream)
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(other)
            await _protocol_send(server, RawData(data=b"HTTP/1.1 200 OK\r\n\r\n"))
            await _protocol_send(server, RawData(data=b""))  # an answer's end: nothing
            await _protocol_send(server, RawData(data=b"body"))
            assert ran == []
        assert ran == ["other"]
        assert _read(client, 23) == b"HTTP/1.1 200 OK\r\n\r\nbody"


async def test_a_cancelled_task_sends_nothing(pair):
    """As on the stock path: `Cancelled`, and not a byte written."""
    stream, client = pair
    server = _server(stream)
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            scope.cancel()
            await _protocol_send(server, RawData(data=b"x" * 1_000_000))
        assert scope.cancelled_caught
        await _protocol_send(server, RawData(data=b"after"))
    assert _read(client, 5) == b"after"


async def test_a_message_once_begun_goes_whole_even_if_cancelled(pair):
    """Cancelled while the rest of a partly written message waits for room: the rest is still
    sent (a truncated WebSocket frame followed by a close frame would be garbage to the client)."""
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    big = bytes(range(256)) * 8192
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def send() -> None:
                with scope:
                    await _protocol_send(server, RawData(data=big))

            nursery.start_soon(send)
            await trio.sleep(0.2)
            assert server.send_lock.locked()  # partly written, the rest waiting
            scope.cancel()
            received = await trio.to_thread.run_sync(_read, client, len(big))
            client.close()
    assert received == big


async def test_what_the_socket_does_not_take_waits_for_room_in_order(pair):
    """A full send buffer: the first part is written at once, the rest waits behind the
    connection's lock until the client reads; every byte arrives, in order, and a later send
    queues behind it."""
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    big = bytes(range(256)) * 8192  # 2 MiB: more than the two buffers hold
    received: list[bytes] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_protocol_send, server, RawData(data=big))
            await trio.sleep(0.2)
            assert server.send_lock.locked()  # the rest waits for room
            nursery.start_soon(_protocol_send, server, RawData(data=b"next"))
            received.append(await trio.to_thread.run_sync(_read, client, len(big) + 4))
            client.close()  # what is still being sent now fails, instead of hanging the test
    assert received == [big + b"next"]


async def test_a_send_waits_behind_one_under_way(pair):
    """While another send of the connection holds it (waiting for room), a send
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
    """The client has gone: the send finds out and hands hypercorn `Closed`, as the stock path
    does."""
    stream, client = pair
    server = _server(stream)
    client.close()
    with trio.fail_after(5):
        await _protocol_send(server, RawData(data=b"x" * 100_000))
    assert [type(e).__name__ for e in server.closed] == ["Closed"]


async def test_tls_streams_are_sent_behind_the_lock(pair):
    """Not a plain socket stream: no direct write; the lock's checkpoint raises in a cancelled
    scope, as on the stock path."""
    stream, _ = pair
    server = _server(SimpleNamespace(send_all=stream.send_all))
    with trio.fail_after(5):
        with trio.CancelScope() as scope:
            scope.cancel()
            await _protocol_send(server, RawData(data=b"x"))
        assert scope.cancelled_caught


def test_install_patches_hypercorn_once(monkeypatch):
    from hypercorn.trio.tcp_server import TCPServer

    monkeypatch.setattr(http_send, "_send_timeout_s", http_send._send_timeout_s)
    install(7.5)
    install(7.5)
    assert TCPServer.protocol_send is _protocol_send
    assert http_send._send_timeout_s == 7.5


async def _abort_after(seconds: float) -> None:
    """A send that never gave up would be shielded from the test's own timeout and hang it:
    end it after `seconds`, so that the test fails on its timing instead."""
    await trio.sleep(seconds)
    abort_sends()


async def test_a_client_that_takes_nothing_is_dropped_after_the_send_timeout(pair, monkeypatch):
    """The rest of an answer waits for room; when the client takes nothing for the send timeout,
    the send ends, the connection is closed and hypercorn hears `Closed` (the stock path would
    wait for good)."""
    monkeypatch.setattr(http_send, "_send_timeout_s", 0.3)
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_abort_after, 3)
            started = trio.current_time()
            await _protocol_send(server, RawData(data=b"x" * 4_000_000))
            waited = trio.current_time() - started
            nursery.cancel_scope.cancel()
    assert 0.3 <= waited < 2
    assert [type(e).__name__ for e in server.closed] == ["Closed"]
    assert stream.socket.fileno() == -1  # closed: the client sees the connection end
    client.settimeout(2)
    received = await trio.to_thread.run_sync(_read, client, 4_000_000)
    assert 0 < len(received) < 4_000_000  # what the buffers held, then the end


async def test_a_slow_client_that_keeps_taking_is_not_dropped(pair, monkeypatch):
    """Every byte the client takes starts the timeout anew: a client that reads slowly, but
    more often than the timeout, gets the whole answer though it takes several timeouts long."""
    monkeypatch.setattr(http_send, "_send_timeout_s", 0.4)
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    big = bytes(range(256)) * 8192  # 2 MiB

    def read_slowly() -> bytes:
        data = b""
        while len(data) < len(big):
            time.sleep(0.15)
            want = min(256 * 1024, len(big) - len(data))
            chunk = _read(client, want)
            data += chunk
            if len(chunk) < want:  # the connection ended
                break
        return data

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_protocol_send, server, RawData(data=big))
            started = time.monotonic()
            received = await trio.to_thread.run_sync(read_slowly)
            took = time.monotonic() - started
    assert received == big
    assert took > 3 * 0.4  # longer than the timeout several times over
    assert server.closed == []


async def test_abort_sends_ends_a_waiting_send_that_cancellation_cannot(pair, monkeypatch):
    """A send waiting for a client that takes nothing is shielded: cancelling its task does not
    end it, `abort_sends()` (the end of a shutdown) does, at once."""
    monkeypatch.setattr(http_send, "_send_timeout_s", 60)
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    done = trio.Event()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            scope = trio.CancelScope()

            async def send() -> None:
                with scope:
                    await _protocol_send(server, RawData(data=b"x" * 4_000_000))
                done.set()

            nursery.start_soon(send)
            await trio.sleep(0.2)
            scope.cancel()
            await trio.sleep(0.3)
            assert not done.is_set()  # shielded: still waiting for the client
            abort_sends()
            await done.wait()
    assert [type(e).__name__ for e in server.closed] == ["Closed"]
    assert stream.socket.fileno() == -1


async def test_a_slow_reader_over_tcp_is_kept_though_the_socket_stays_full(monkeypatch):
    """Over TCP the kernel wakes a writer only once much of its buffer is free, which a slow
    reader can take longer than the timeout to free: a waiting send tries again without the
    wake-up, so any room the reading makes counts, and a client reading ~20 KB/s, steadily,
    gets an 80 KiB answer whole with a timeout of 0.5 s (waiting for the wake-up alone would
    have dropped it)."""
    monkeypatch.setattr(http_send, "_send_timeout_s", 0.5)
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: no growth
    client.settimeout(5)
    await trio.to_thread.run_sync(client.connect, listener.getsockname())
    conn, _ = await listener.accept()
    listener.close()
    big = bytes(range(256)) * 320  # 80 KiB

    def read_slowly() -> bytes:
        data = b""
        while len(data) < len(big):
            time.sleep(0.05)
            chunk = client.recv(1024)
            if not chunk:
                break
            data += chunk
        return data

    with client:
        async with trio.SocketStream(conn) as stream:
            server = _server(stream)
            with trio.fail_after(20):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_abort_after, 15)
                    nursery.start_soon(_protocol_send, server, RawData(data=big))
                    received = await trio.to_thread.run_sync(read_slowly)
                    nursery.cancel_scope.cancel()
    assert received == big
    assert server.closed == []


async def test_a_send_that_has_to_wait_after_abort_sends_gives_up_at_once(pair, monkeypatch):
    """After `abort_sends()`, a send that would wait for the client (one that got the lock in
    the same pass, say) does not start a wait of its own: the end of a shutdown is final."""
    monkeypatch.setattr(http_send, "_send_timeout_s", 60)
    stream, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    server = _server(stream)
    abort_sends()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_abort_after, 3)  # a send that waited would be ended here
            started = trio.current_time()
            await _protocol_send(server, RawData(data=b"x" * 4_000_000))
            waited = trio.current_time() - started
            nursery.cancel_scope.cancel()
    assert waited < 1
    assert [type(e).__name__ for e in server.closed] == ["Closed"]
