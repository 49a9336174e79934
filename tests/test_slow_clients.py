"""How connections to clients end: a client that reads not at all is dropped after the send
timeout and cannot hold up a SIGTERM; a slow one that keeps reading gets all of a long download;
a connection to be closed (`Connection: close`, HTTP/1.0) is closed after its answer."""

from __future__ import annotations

import functools
import signal
import socket
import time
from pathlib import Path

import httpx
import pytest
import trio
from quart import Quart

from tests.client import wait_job
from tests.media.probe import count_frames
from tests.test_process import start_process

BIG = 16 * 2**20  # more than the loopback connection's buffers hold


async def _segment_made_big(client: httpx.AsyncClient) -> tuple[str, Path]:
    """A demo job's first segment (checked with ffprobe), then overwritten with BIG bytes, so
    that its download outlasts the socket buffers. Returns its download path and file."""
    job_id = (await client.post("/collect", json={"duration": 1, "segment_seconds": 1,
                                                   "streams": ["demo://testsrc"]})).json()["job_id"]
    job = await wait_job(client, job_id)
    assert job["status"] == "completed"
    segment = job["sources"][0]["segments"][0]
    path = Path(segment["path"])
    assert count_frames(path) > 0
    await trio.Path(path).write_bytes(bytes(range(256)) * (BIG // 256))
    return f"/jobs/{job_id}/sources/0/segments/{segment['index']}", path


def _connect(port: int, target: str, rcvbuf: int) -> socket.socket:
    """A blocking client socket with a small receive buffer (set before connecting, so the
    kernel does not grow it), the request sent."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nhost: test\r\n\r\n".encode())
    return sock


def _read_response(sock: socket.socket, pause_s: float = 0.0, chunk: int = 1 << 18
                   ) -> tuple[bytes, bytes]:
    """Headers and body, reading `chunk` bytes every `pause_s`, until Content-Length or the end
    of the connection; a read that times out raises."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise AssertionError(f"the connection ended before the headers: {data!r}")
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        time.sleep(pause_s)
        more = sock.recv(min(chunk, length - len(body)))
        if not more:
            break
        body += more
    return head, body


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def settings(settings):
    from dataclasses import replace

    return replace(settings, send_timeout_s=0.5)


async def test_a_client_that_stops_reading_is_dropped_and_the_service_goes_on(collector, client):
    """A download nobody reads: after the send timeout the connection is closed (the client
    gets what the buffers held, then the end), and the service answers others as before."""
    with trio.fail_after(30):
        target, _ = await _segment_made_big(client)
        sock = await trio.to_thread.run_sync(_connect, _port(collector.url), target, 4096)
        with sock:
            await trio.sleep(2)  # the send waits for room, then gives up after 0.5 s
            head, body = await trio.to_thread.run_sync(_read_response, sock)
        assert head.startswith(b"HTTP/1.1 200")
        assert 0 < len(body) < BIG
        assert (await client.get("/")).json() == {"message": "Camera Collector API is running!"}


async def test_a_slow_download_is_not_cut_short(monkeypatch, settings, nursery):
    """A client that reads slowly but steadily gets the whole file, however long it takes: not
    cut at Quart's response timeout (lowered here to 1 s so that the test need not take 60)."""
    from collector.server import serve

    monkeypatch.setattr(Quart, "default_config", {**Quart.default_config, "RESPONSE_TIMEOUT": 1})
    stop = trio.Event()
    running = await nursery.start(functools.partial(serve, settings, stop=stop))
    try:
        with trio.fail_after(40):
            async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
                target, path = await _segment_made_big(http)
            sock = await trio.to_thread.run_sync(_connect, _port(running.url), target, 65536)
            with sock:
                started = time.monotonic()
                head, body = await trio.to_thread.run_sync(_read_response, sock, 0.05)
                took = time.monotonic() - started
    finally:
        stop.set()
    assert head.startswith(b"HTTP/1.1 200")
    assert took > 2  # well past the response timeout
    assert body == await trio.Path(path).read_bytes()


async def test_sigterm_finishes_while_a_client_has_stopped_reading(tmp_path, nursery):
    """The real process, a long send timeout, a download nobody reads: SIGTERM still ends the
    process within its grace (the stalled send is given up at the end of the shutdown)."""
    process = await start_process(tmp_path, nursery, COLLECTOR_SEND_TIMEOUT_S="600",
                                  COLLECTOR_GRACEFUL_TIMEOUT_S="1")
    try:
        base = f"http://127.0.0.1:{process.port}"
        with trio.fail_after(30):
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                target, _ = await _segment_made_big(http)
            sock = await trio.to_thread.run_sync(_connect, process.port, target, 4096)
        with sock:
            await trio.sleep(1)  # the download's send now waits for room
            process.proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            with trio.fail_after(15):
                code = await process.proc.wait()
            took = time.monotonic() - started
    finally:
        if process.proc.returncode is None:
            process.proc.kill()
            await process.proc.wait()
    assert code == 0
    assert took < 5  # drain (no jobs) + 1 s of hypercorn's grace + 1 s, not the 600 s timeout


@pytest.mark.parametrize("request_line", [
    b"GET / HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
])
async def test_a_connection_to_be_closed_is_closed_after_the_answer(collector, request_line):
    """`Connection: close` and HTTP/1.0: the whole answer, then the end of the connection (a
    client that reads to the end, as HTTP/1.0 ones do, does not wait for good)."""

    def exchange() -> bytes:
        with socket.create_connection(("127.0.0.1", _port(collector.url))) as sock:
            sock.settimeout(3)  # an end that never comes fails the test instead of hanging it
            sock.sendall(request_line)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            return data

    with trio.fail_after(10):
        data = await trio.to_thread.run_sync(exchange)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert body == b'{"message":"Camera Collector API is running!"}\n'
