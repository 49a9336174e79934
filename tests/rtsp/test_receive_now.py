"""`RtspConnection.receive_now`: a read without a trip through trio's scheduler, for the playing
loop when its timer wakes it. Real TCP sockets on localhost (no fakes of the socket)."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from collector.rtsp.client import RtspConnection
from collector.rtsp.wire import Interleaved
from tests.rtsp.fake_camera import frame_bytes


async def connected() -> tuple[RtspConnection, trio.SocketStream]:
    """Our connection and the server's end of one localhost TCP connection."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    port = listener.socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        accepted: list[trio.SocketStream] = []

        async def accept() -> None:
            accepted.append(await listener.accept())

        nursery.start_soon(accept)
        ours = await trio.open_tcp_stream("127.0.0.1", port)
    await listener.aclose()
    return RtspConnection(ours, "rtsp://127.0.0.1/x", None), accepted[0]


async def arrived(conn: RtspConnection, deadline: float = 5.0) -> None:
    """Wait (outside receive_now) until the socket holds bytes."""
    with trio.fail_after(deadline):
        await trio.lowlevel.wait_readable(conn.stream.socket)  # type: ignore[attr-defined]


async def test_reads_what_is_there_and_waits_for_nothing():
    with trio.fail_after(10):
        conn, server = await connected()
        assert conn.receive_now() is False  # nothing yet: the caller awaits receive()
        packet = frame_bytes(0, b"\x80\x60" + bytes(20))
        await server.send_all(packet * 3)
        await arrived(conn)
        assert conn.receive_now() is True
        assert conn.bytes_received == 3 * len(packet) and not conn.last_read_full
        events = [conn.framer.next_event() for _ in range(3)]
        assert [type(e) for e in events] == [Interleaved] * 3
        assert conn.framer.next_event() is None
        assert conn.receive_now() is False
        await server.aclose()
        await arrived(conn)
        with pytest.raises(EOFError):
            conn.receive_now()
        await conn.stream.aclose()


async def test_a_reset_connection_is_trios_broken_resource():
    with trio.fail_after(10):
        conn, server = await connected()
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await server.aclose()  # RST
        await arrived(conn)
        with pytest.raises(trio.BrokenResourceError, match="socket connection broken"):
            conn.receive_now()
        await conn.stream.aclose()


async def test_events_from_before_play_and_tls_go_the_waiting_way():
    with trio.fail_after(10):
        conn, server = await connected()
        await server.send_all(frame_bytes(0, b"\x80\x60" + bytes(20)))
        await arrived(conn)
        conn._early.append(Interleaved(0, b"x"))
        assert conn.receive_now() is False  # receive() hands those out first
        assert await conn.receive() == [Interleaved(0, b"x")]
        assert conn.receive_now() is True
        wrapped = RtspConnection(trio.StapledStream(conn.stream, conn.stream), "rtsp://x", None)
        assert wrapped.receive_now() is False  # not a plain socket stream
        await server.aclose()
        await conn.stream.aclose()
