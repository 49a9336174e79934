"""Trio helpers running real media servers for integration tests.

Usage inside a test::

    async with trio.open_nursery() as nursery:
        rtsp = await nursery.start(serve_rtsp, clip.path)
        http = await nursery.start(serve_http, folder)
        rtmp = await nursery.start(serve_rtmp, clip.path)
        ...
        nursery.cancel_scope.cancel()   # servers are stopped and reaped
"""

from __future__ import annotations

import functools
import socket
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import trio

SYSTEM_PYTHON = "/usr/bin/python3"  # has python3-gi + GstRtspServer (the venv does not)
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
READY_TIMEOUT = 20
TERMINATE_GRACE = 3


@dataclass(frozen=True)
class RtspServer:
    port: int
    base_url: str  # "rtsp://127.0.0.1:PORT" (rtsps:// with TLS)
    paths: tuple[str, ...] = ("/cam",)
    user: str | None = None
    password: str | None = field(default=None, repr=False)

    def url(self, path: str | None = None, *, auth: bool = True) -> str:
        """URL of a mount path (default: the first one), with credentials when ``auth``."""
        path = path or self.paths[0]
        if auth and self.user is not None and self.password is not None:
            creds = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}@"
            scheme = self.base_url.partition(":")[0]
            return f"{scheme}://{creds}127.0.0.1:{self.port}{path}"
        return f"{self.base_url}{path}"


@dataclass(frozen=True)
class HttpServer:
    port: int
    base_url: str  # "http://127.0.0.1:PORT"
    folder: Path

    def url(self, relpath: str | Path) -> str:
        """URL of a file; ``relpath`` may be absolute inside ``folder``."""
        rel = Path(relpath)
        if rel.is_absolute():
            rel = rel.relative_to(self.folder)
        return f"{self.base_url}/{quote(rel.as_posix())}"


async def _read_ready(stream: trio.abc.ReceiveStream) -> int:
    buf = b""
    while b"\n" not in buf:
        chunk = await stream.receive_some()
        if not chunk:
            raise RuntimeError(f"rtsp_server.py exited before READY (output: {buf!r})")
        buf += chunk
    line = buf.split(b"\n", 1)[0].decode().strip()
    if not line.startswith("READY "):
        raise RuntimeError(f"unexpected first line from rtsp_server.py: {line!r}")
    return int(line.split()[1])


async def _terminate(proc: trio.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        with trio.move_on_after(TERMINATE_GRACE):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.stdout is not None:
        await proc.stdout.aclose()


async def serve_rtsp(
    clip: Path,
    *,
    paths: Sequence[str] = ("/cam",),
    shared: bool = False,
    one_pipeline: bool = False,
    user: str | None = None,
    password: str | None = None,
    digest: bool = False,
    port: int = 0,
    tls: tuple[Path, Path] | None = None,
    audio: str = "aac",
    task_status: trio.TaskStatus[RtspServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run tests/media/rtsp_server.py on a free port until cancelled.

    ``shared=True`` loops the clip forever in one pipeline per path shared by its clients, and
    ``one_pipeline=True`` (with shared) in one pipeline for every path of this server;
    ``user``/``password`` require Basic auth on every path (``digest=True``: Digest, and only
    Digest is offered); ``tls=(cert, key)`` (PEM files)
    serves rtsps:// instead; ``audio="pcmu"``/``"pcma"`` sends the clip's audio as G.711.
    """
    cmd = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--clip", str(clip), "--port", str(port)]
    for path in paths:
        cmd += ["--path", path]
    if shared:
        cmd.append("--shared")
    if one_pipeline:
        cmd.append("--one-pipeline")
    if user is not None:
        cmd += ["--auth", "--user", user, "--password", password or ""]
        if digest:
            cmd.append("--digest")
    if tls is not None:
        cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1])]
    if audio != "aac":
        cmd += ["--audio", audio]
    proc = await trio.lowlevel.open_process(cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        with trio.fail_after(READY_TIMEOUT):
            port = await _read_ready(proc.stdout)
        scheme = "rtsps" if tls is not None else "rtsp"
        task_status.started(RtspServer(port=port, base_url=f"{scheme}://127.0.0.1:{port}",
                                       paths=tuple(paths), user=user, password=password))
        await proc.wait()
        raise RuntimeError(f"rtsp_server.py exited unexpectedly with {proc.returncode}")
    finally:
        with trio.CancelScope(shield=True):
            await _terminate(proc)


@dataclass(frozen=True)
class RtmpServer:
    port: int
    url: str  # "rtmp://127.0.0.1:PORT/live/cam"


async def serve_rtmp(clip: Path, *, loop: bool = False,
                     task_status: trio.TaskStatus[RtmpServer] = trio.TASK_STATUS_IGNORED) -> None:
    """FFmpeg serving ``clip`` over RTMP (`-listen 1`, packets copied into FLV) to one player,
    in real time from the clip's start once the player connects (``loop``: again and again),
    until cancelled. FFmpeg serves a single connection: it exits once its player leaves."""
    port = _free_port()
    url = f"rtmp://127.0.0.1:{port}/live/cam"
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
           *(["-stream_loop", "-1"] if loop else []), "-i", str(clip), "-c", "copy",
           "-f", "flv", "-listen", "1", url]
    proc = await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with trio.fail_after(READY_TIMEOUT):
            while not _listening(port):  # (a connection to find out would be its one player)
                if proc.poll() is not None:
                    raise RuntimeError(f"ffmpeg exited before listening: {proc.returncode}")
                await trio.sleep(0.05)
        task_status.started(RtmpServer(port=port, url=url))
        await proc.wait()
        await trio.sleep_forever()  # its player has left
    finally:
        with trio.CancelScope(shield=True):
            await _terminate(proc)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening(port: int) -> bool:
    """Does a socket listen on 127.0.0.1:`port` (the kernel's table, without connecting)?"""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(line.split()[1] == wanted and line.split()[3] == "0A"
                   for line in list(table)[1:])


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins request threads: nothing leaks
    block_on_close = True


async def serve_http(
    folder: Path, task_status: trio.TaskStatus[HttpServer] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve ``folder`` as static files on 127.0.0.1:<free port> until cancelled."""
    folder = await trio.to_thread.run_sync(Path(folder).resolve)
    httpd = _Server(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(folder)))
    port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              name=f"serve_http:{port}", daemon=True)
    thread.start()
    try:
        base_url = f"http://127.0.0.1:{port}"
        task_status.started(HttpServer(port=port, base_url=base_url, folder=folder))
        await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(httpd.shutdown)
            await trio.to_thread.run_sync(httpd.server_close)
            await trio.to_thread.run_sync(thread.join)
