"""Servers that misbehave on purpose, in-process on trio, on free ports.

- `serve_stalling_http`: answers HTTP 200 with the first bytes of a file, then keeps the connection
  open and silent (a camera whose encoder hung).
- `serve_pausing_http`: answers HTTP 200 with a whole file, pausing at given byte offsets for a
  while or until the test says so (a file held at a known point).
- `serve_live_http`: answers HTTP 200 without a Content-Length (as a live stream does) with a
  whole file, then closes the connection (the stream ended).
- `serve_breaking_http`: a file whose connection breaks part-way (Content-Length given, the
  connection closed early at `break_at`): the first one (or `breaking_request`), later ones are
  whole. With
  `ranges`, it announces byte ranges and answers `Range: bytes=N-` with 206 from there, as nginx
  or S3 do, and every read across `break_at` breaks there until a request resumes from it
  (or, `refuse_resume`, answers such a request 503).
- `serve_file_http`: answers with a whole file, of any Content-Type; with `answers`, only the
  first that many requests, later ones with 503 or (`silent`) not at all (a server that takes
  one connection per client).
- `serve_folder_http`: serves a folder's files (a live playlist an encoder writes, a VOD's
  segments), answering 404 for the playlist when the test says (an origin that hiccups); per
  file it can answer 404, cut the file short (with or without byte ranges), never answer, or
  redirect (`FolderHttp`).
- `serve_garbage`: accepts TCP and writes bytes that are no protocol at all.
- `serve_silent`: accepts TCP and never says anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio


async def _serve(handler, task_status) -> None:  # type: ignore[no-untyped-def]
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, handler, listeners))
        task_status.started(port)


async def _serve_as(handler, server, task_status) -> None:  # type: ignore[no-untyped-def]
    """`_serve`, reporting `server` (its `port` set) instead of the port."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    server.port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(partial(trio.serve_listeners, handler, listeners))
        task_status.started(server)


async def _read_request(stream: trio.SocketStream) -> bool:
    """Read an HTTP request's head; False if the client went away first."""
    return await _request_head(stream) is not None


async def _request_head(stream: trio.SocketStream) -> bytes | None:
    """An HTTP request's head; None if the client went away first."""
    request = b""
    while b"\r\n\r\n" not in request:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return None
        request += chunk
    return request


async def serve_stalling_http(
    payload: Path, nbytes: int, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    data = (await trio.Path(payload).read_bytes())[:nbytes]

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            if not await _read_request(stream):
                return
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n"
                    b"Content-Length: 100000000\r\n\r\n")
            try:
                await stream.send_all(head + data)
            except trio.BrokenResourceError:
                return  # the client went away (it opens a large file twice: read-ahead)
            await trio.sleep_forever()

    await _serve(handler, task_status)


async def serve_pausing_http(
    payload: Path, pauses: Sequence[tuple[int, float | trio.Event]],
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """At each (offset, pause), in order: a float sleeps that many seconds, an Event waits. A
    client that goes away early ends only its own connection."""
    data = await trio.Path(payload).read_bytes()

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            if not await _read_request(stream):
                return
            await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n"
                                  b"Content-Length: %d\r\n\r\n" % len(data))
            sent = 0
            try:
                for offset, pause in pauses:
                    await stream.send_all(data[sent:offset])
                    sent = offset
                    if isinstance(pause, trio.Event):
                        await pause.wait()
                    else:
                        await trio.sleep(pause)
                await stream.send_all(data[sent:])
            except trio.BrokenResourceError:
                return  # the client stopped reading (a job cancelled mid-file): not our error

    await _serve(handler, task_status)


async def serve_live_http(
    payload: Path, nbytes: int | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`nbytes`: only the file's first bytes, cut anywhere (a stream that ends mid-frame)."""
    data = (await trio.Path(payload).read_bytes())[:nbytes]

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            if not await _read_request(stream):
                return
            try:
                await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\n"
                                      b"Connection: close\r\n\r\n" + data)
            except trio.BrokenResourceError:
                return

    await _serve(handler, task_status)


class BreakingHttp:
    """What `serve_breaking_http` was asked: each request's Range header (None without one)."""

    def __init__(self) -> None:
        self.ranges: list[str | None] = []
        self.port = 0
        self.resumed = False  # a request asked for the rest from where a read broke


async def serve_breaking_http(
    payload: Path, break_at: int, ranges: bool, rate: float | None = None,
    refuse_resume: bool = False, breaking_request: int = 1,
    task_status: trio.TaskStatus[BreakingHttp] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`rate`: bytes a second (sent in 16 KiB pieces), else as fast as the client reads.
    `refuse_resume` (with `ranges`): a request for the rest from the break gets 503 (an origin
    in trouble). `breaking_request` (without `ranges`): the request that breaks (1: the first)."""
    data = await trio.Path(payload).read_bytes()
    seen = BreakingHttp()

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head = await _request_head(stream)
            if head is None:
                return
            asked = next((line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                          if line.lower().startswith(b"range:")), None)
            seen.ranges.append(asked)
            start = int(asked.removeprefix("bytes=").split("-")[0]) if ranges and asked else 0
            if ranges and refuse_resume and 0 < start <= break_at:
                with contextlib.suppress(trio.BrokenResourceError):
                    await stream.send_all(b"HTTP/1.1 503 Service Unavailable\r\n"
                                          b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if ranges:  # every read across break_at breaks there until one resumes from it
                seen.resumed = seen.resumed or 0 < start <= break_at
                breaks = not seen.resumed and start < break_at
            else:  # one connection breaks; a client can only start again
                breaks = len(seen.ranges) == breaking_request
            status = b"206 Partial Content" if ranges and asked else b"200 OK"
            extra = b"Accept-Ranges: bytes\r\n" if ranges else b""
            if ranges and asked:
                extra += b"Content-Range: bytes %d-%d/%d\r\n" % (start, len(data) - 1, len(data))
            body = data[start:break_at] if breaks else data[start:]
            try:
                await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Type: video/mp2t\r\n"
                                      + extra + b"Content-Length: %d\r\n" % (len(data) - start)
                                      + b"Connection: close\r\n\r\n")
                piece = len(body) if rate is None else 16384
                for at in range(0, len(body), piece):
                    await stream.send_all(body[at:at + piece])
                    if rate is not None:
                        await trio.sleep(piece / rate)
            except trio.BrokenResourceError:
                return

    await _serve_as(handler, seen, task_status)


async def serve_file_http(
    payload: Path, content_type: str = "video/mp2t", answers: int | None = None,
    silent: bool = False, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """`silent`: requests past `answers` get no answer at all, on an open connection."""
    data = await trio.Path(payload).read_bytes()
    answered = 0

    async def handler(stream: trio.SocketStream) -> None:
        nonlocal answered
        async with stream:
            if not await _read_request(stream):
                return
            answered += 1
            ok = answers is None or answered <= answers
            if not ok and silent:
                await trio.sleep_forever()
            body = data if ok else b""
            status = b"200 OK" if ok else b"503 Service Unavailable"
            try:
                await stream.send_all(b"HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                                      b"Connection: close\r\n\r\n%s"
                                      % (status, content_type.encode(), len(body), body))
            except trio.BrokenResourceError:
                return

    await _serve(handler, task_status)


class FolderHttp:
    """A `serve_folder_http` server: `fail()` makes its next playlist requests answer 404. Per
    file name (a path under the folder): `missing` answers 404 that many times, `cut` sends only
    that many bytes of the file (its whole length announced) and closes, `silent` never answers,
    `moved` answers 302 to that location. `ranges`: a file cut short says it takes byte ranges,
    and a request for the rest is answered 503. `requests` lists every name asked for."""

    def __init__(self) -> None:
        self.port = 0
        self.failing = 0
        self.failed = 0
        self.missing: dict[str, int] = {}
        self.cut: dict[str, int] = {}
        self.silent: set[str] = set()
        self.moved: dict[str, str] = {}
        self.ranges = False
        self.requests: list[str] = []

    def fail(self, times: int = 1) -> None:
        self.failing = times


async def serve_folder_http(
    folder: Path, task_status: trio.TaskStatus[FolderHttp] = trio.TASK_STATUS_IGNORED,
) -> None:
    server = FolderHttp()
    root = await trio.Path(folder).resolve()

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head = await _request_head(stream)
            if head is None:
                return
            name = head.split(b" ")[1].decode().lstrip("/")
            server.requests.append(name)
            path = await (root / name).resolve()
            body = b""
            if name in server.silent:
                await trio.sleep_forever()
            if name.endswith(".m3u8") and server.failing:
                server.failing -= 1
                server.failed += 1
                reply = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
            elif server.missing.get(name, 0) > 0:
                server.missing[name] -= 1
                reply = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
            elif name in server.cut and b"range: bytes=0-" not in head.lower() and (
                    b"range:" in head.lower()):
                reply = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
            elif name in server.moved:
                reply = (b"HTTP/1.1 302 Found\r\nLocation: %s\r\nContent-Length: 0\r\n"
                         % server.moved[name].encode())
            elif not path.is_relative_to(root) or not await path.is_file():
                reply = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
            else:
                body = await path.read_bytes()
                reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n" % len(body)
                if name in server.cut:
                    body = body[:server.cut[name]]
                    reply += b"Accept-Ranges: bytes\r\n" if server.ranges else b""
            reply += b"Connection: close\r\n\r\n" + body
            try:
                await stream.send_all(reply)
            except trio.BrokenResourceError:
                return

    await _serve_as(handler, server, task_status)


async def serve_garbage(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"\x00\xffNOT A PROTOCOL\r\n" * 64)
            await trio.sleep(0.5)

    await _serve(handler, task_status)


async def serve_silent(task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            await trio.sleep_forever()

    await _serve(handler, task_status)
