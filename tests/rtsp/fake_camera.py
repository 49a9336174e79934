"""A scripted RTSP server in-process on trio (port 0), for the protocol's edge cases.

It answers OPTIONS/DESCRIBE/SETUP/PLAY/GET_PARAMETER/TEARDOWN like a camera, optionally demanding
Digest authentication (with nonces that go stale on chosen methods), optionally answering a chosen
method with a chosen status or redirecting it; after PLAY it runs `after_play(stream)` to send
whatever the test wants (media, RTCP only, garbage, a half frame, a request of its own such as
REDIRECT, framed like a client's: `wire.encode_request`). Every request it receives is recorded
with its arrival time and path, and every status it answered with, and so is every interleaved
packet (our RTCP) with its channel; the client's answers to its own requests are recorded among
the requests (`client_answers`). Given a server `ssl.SSLContext` it speaks rtsps:// (TLS from
the first byte).
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio

from collector.errors import SourceError
from collector.rtsp.auth import parse_challenge
from collector.rtsp.session import interleaved_channels
from tests.media.access_units import split_length_prefixed
from tests.rtsp.packets import PPS, SPS, h264_frame, rtp, slice_nal

SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\na=control:*\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    "a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"
)
REALM, NONCE = "fake", "abc123"


def frame_bytes(channel: int, payload: bytes) -> bytes:
    return b"$" + bytes([channel]) + len(payload).to_bytes(2, "big") + payload


def video_frames(count: int, *, seq: int = 0, ts: int = 0, gop: int = 5, sps: bytes = SPS,
                 pps: bytes = PPS, fill: int = 0) -> list[bytes]:
    """`count` H.264 frames at 25 fps as interleaved channel-0 frames (in-band SPS/PPS); the
    n-th frame's slice is filled with the byte `fill + n` (its access unit's last byte)."""
    out = []
    for n in range(count):
        fill_byte = (fill + n) % 256
        nals = ([sps, pps, slice_nal(5, 3000, fill_byte)] if n % gop == 0
                else [slice_nal(1, 700, fill_byte)])
        for pkt in h264_frame(nals, seq, ts + 3600 * n, mtu=1000):
            seq += 1
            raw = rtp(pkt.sequence, pkt.timestamp, pkt.payload, marker=pkt.marker)
            out.append(frame_bytes(0, raw))
    return out


def clip_video_frames(path: Path, count: int, *, channel: int = 0) -> list[bytes]:
    """The first `count` H.264 frames of a real clip (`make_clip`: 25 fps, no B-frames, SPS/PPS
    in every key frame) as interleaved RTP frames on `channel`: video a fake camera can send
    that FFmpeg decodes."""
    import av

    out: list[bytes] = []
    seq = n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        avcc = stream.codec_context.extradata
        assert avcc is not None, f"{path} has no avcC"
        length_size = (avcc[4] & 3) + 1  # lengthSizeMinusOne
        for packet in container.demux(stream):
            if n == count:
                break
            if packet.size == 0:
                continue
            nals = split_length_prefixed(bytes(packet), length_size)
            for pkt in h264_frame(nals, seq, 3600 * n):
                out.append(frame_bytes(channel, rtp(pkt.sequence, pkt.timestamp, pkt.payload,
                                                    marker=pkt.marker)))
                seq += 1
            n += 1
    assert n == count, f"{path} has only {n} video frames"
    return out


RTCP_SENDER_REPORT = bytes([0x80, 200, 0, 6]) + bytes(24)


def _complete(buf: bytes) -> bool:
    """Does `buf` start with a whole request, or a whole interleaved frame?"""
    if buf[:1] == b"$":
        return len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[2:4], "big")
    return b"\r\n\r\n" in buf


class LockedStream:
    """The server side of one connection: replies and `after_play` media never interleave."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream, self.lock = stream, trio.Lock()

    async def send_all(self, data: bytes) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def aclose(self) -> None:
        await self.stream.aclose()


@dataclass
class FakeCamera:
    after_play: Callable[[LockedStream], Awaitable[None]] | None = None
    digest: tuple[str, str] | None = None  # (user, password) demanded with Digest
    # method -> how many of its correctly answered requests are refused as `stale=true` (each
    # time with a new nonce, as a server whose nonces expire does)
    stale: dict[str, int] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)  # method -> status to answer
    silent: set[str] = field(default_factory=set)  # methods never answered
    # (method, path) -> (status, Location): a redirect, e.g. ("DESCRIBE", "/live"): (302, "/b")
    moved: dict[tuple[str, str], tuple[int, str]] = field(default_factory=dict)
    host: str = "127.0.0.1"  # any loopback address: 127.0.0.2 is "another host"
    tls: ssl.SSLContext | None = None  # a server context: rtsps://
    session_timeout: int = 60
    sdp: str = SDP
    requests: list[tuple[float, str, dict[str, str]]] = field(default_factory=list)
    answers: list[tuple[str, int]] = field(default_factory=list)  # (method, status) we sent
    targets: list[str] = field(default_factory=list)  # the path of each request
    interleaved: list[tuple[float, int, bytes]] = field(default_factory=list)  # (t, channel, data)
    ssrc: int | None = None  # announced in every SETUP answer's Transport
    port: int = 0
    nonce: str = NONCE  # the current one; older ones are stale
    playing: str = ""  # the path of the last PLAY answered 200 (what `after_play` plays)
    _arrival: trio.Event = field(default_factory=trio.Event)  # set at each interleaved packet
    _request: trio.Event = field(default_factory=trio.Event)  # set at each request

    async def serve(self, task_status: trio.TaskStatus[FakeCamera] = trio.TASK_STATUS_IGNORED
                    ) -> None:
        tcp = await trio.open_tcp_listeners(0, host=self.host)
        self.port = tcp[0].socket.getsockname()[1]
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(tcp)
        if self.tls is not None:
            listeners = [trio.SSLListener(lis, self.tls, https_compatible=True) for lis in tcp]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    @property
    def url(self) -> str:
        return f"{'rtsps' if self.tls else 'rtsp'}://{self.host}:{self.port}/live"

    async def wait_interleaved(self, count: int) -> None:
        """Until `count` interleaved packets (our RTCP) have come from the client."""
        while len(self.interleaved) < count:
            await self._arrival.wait()

    async def wait_requests(self, count: int) -> None:
        """Until `count` requests (or answers to ours: `client_answers`) have come in all."""
        while len(self.requests) < count:
            await self._request.wait()

    def methods(self) -> list[str]:
        return [method for _, method, _ in self.requests]

    def client_answers(self) -> list[tuple[int, dict[str, str]]]:
        """The client's answers to our own requests: (status, headers), in order."""
        return [(int(status), headers)
                for (_, method, headers), status in zip(self.requests, self.targets, strict=True)
                if method == "RTSP/1.0"]

    def setup_channels(self) -> dict[str, int]:
        """The RTP channel of each track the client set up, by the last part of its path
        (`trackID=1`), from the client's Transport (this camera agrees to it)."""
        return {path.rsplit("/", 1)[-1]: interleaved_channels(headers.get("transport", ""), 0)[0]
                for (_, method, headers), path in zip(self.requests, self.targets, strict=True)
                if method == "SETUP"}

    async def _handle(self, stream: trio.abc.Stream) -> None:
        buf = b""
        locked = LockedStream(stream)
        async with stream, trio.open_nursery() as nursery:
            while True:
                while not _complete(buf):
                    try:
                        chunk = await stream.receive_some(65536)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        chunk = b""  # the client left, or after_play closed the connection
                    if not chunk:
                        nursery.cancel_scope.cancel()
                        return
                    buf += chunk
                if buf[:1] == b"$":  # the client's RTCP
                    end = 4 + int.from_bytes(buf[2:4], "big")
                    self.interleaved.append((trio.current_time(), buf[1], buf[4:end]))
                    self._arrival.set()
                    self._arrival = trio.Event()
                    buf = buf[end:]
                    continue
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.decode().split("\r\n")
                method, target = lines[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (line.partition(":") for line in lines[1:])}
                self.requests.append((trio.current_time(), method, headers))
                self.targets.append(urlsplit(target).path)
                self._request.set()
                self._request = trio.Event()
                if method in self.silent:
                    continue
                reply = self._answer(method, target, headers)
                try:
                    await locked.send_all(reply)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if method == "PLAY" and reply.startswith(b"RTSP/1.0 200") and self.after_play:
                    self.playing = urlsplit(target).path
                    nursery.start_soon(self._play, locked)

    async def _play(self, stream: LockedStream) -> None:
        assert self.after_play is not None
        try:
            await self.after_play(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away: what a camera sees every day

    def _answer(self, method: str, target: str, headers: dict[str, str]) -> bytes:
        cseq = headers.get("cseq", "0")
        extra: dict[str, str] = {}
        body = b""
        status = self.fail.get(method, 200)
        auth = "ok"
        if self.digest and method not in ("OPTIONS", "TEARDOWN"):
            auth = self._authorized(method, headers)
            if auth == "ok" and self.stale.get(method, 0) > 0:
                self.stale[method] -= 1
                self.nonce, auth = f"{self.nonce}+", "stale"
        moved = self.moved.get((method, urlsplit(target).path))
        if auth == "ok" and moved is not None:
            status, extra["Location"] = moved
        if auth != "ok":
            status = 401
            stale = ", stale=true" if auth == "stale" else ""
            extra["WWW-Authenticate"] = f'Digest realm="{REALM}", nonce="{self.nonce}"{stale}'
        elif status == 200:
            if method == "OPTIONS":
                extra["Public"] = "OPTIONS, DESCRIBE, SETUP, PLAY, GET_PARAMETER, TEARDOWN"
            elif method == "DESCRIBE":
                body = self.sdp.encode()
                extra["Content-Type"] = "application/sdp"
                extra["Content-Base"] = target.rstrip("/") + "/"
            elif method == "SETUP":
                extra["Transport"] = headers.get("transport", "")
                if self.ssrc is not None:
                    extra["Transport"] += f";ssrc={self.ssrc:08X}"
                extra["Session"] = f"F00D;timeout={self.session_timeout}"
            elif method == "PLAY":
                extra["RTP-Info"] = f"url={target}/trackID=0;seq=0;rtptime=0"
        self.answers.append((method, status))
        reason = {200: "OK", 301: "Moved Permanently", 302: "Found", 305: "Use Proxy",
                  401: "Unauthorized", 404: "Not Found",
                  454: "Session Not Found"}.get(status, "Error")
        lines = [f"RTSP/1.0 {status} {reason}", f"CSeq: {cseq}",
                 *(f"{k}: {v}" for k, v in extra.items())]
        if body:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _authorized(self, method: str, headers: dict[str, str]) -> str:
        """"ok", "stale" (right credentials, an old nonce of ours) or "no"."""
        value = headers.get("authorization", "")
        if not value.lower().startswith("digest ") or self.digest is None:
            return "no"
        params = parse_challenge(value).params
        user, password = self.digest

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()

        nonce = params.get("nonce", "")
        ha1, ha2 = md5(f"{user}:{REALM}:{password}"), md5(f"{method}:{params.get('uri')}")
        if params.get("username") != user or params.get("response") != md5(
                f"{ha1}:{nonce}:{ha2}"):
            return "no"
        if nonce == self.nonce:
            return "ok"
        return "stale" if self.nonce.startswith(nonce) else "no"


async def record_until_end(camera: FakeCamera, opener: Any, sink: Any, *,
                           ceiling: float) -> BaseException:
    """Serve `camera` and run `opener` against it into `sink` until the session ends (the opener
    must raise: a SourceError); returns that error. Everything within `ceiling` seconds."""
    with trio.fail_after(ceiling):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            try:
                await opener.run(camera.url, {}, sink)
            except SourceError as exc:
                error: BaseException = exc
            else:
                raise AssertionError("the opener returned instead of raising")
            nursery.cancel_scope.cancel()
    return error
