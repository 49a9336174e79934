"""RTSP/1.0 on the wire, without I/O: requests to bytes, bytes to responses and interleaved frames.

A TCP connection after PLAY carries RTSP messages and `$`-framed RTP/RTCP packets (RFC 2326 10.12)
mixed together. `Framer.feed()` takes whatever `receive_some` returned; `Framer.next_event()` hands
back complete `Response`, `Request` (a server may ask us things) and `Interleaved` events (while
playing, `reads.route()` walks the buffer itself and asks `next_event()` only for what is not
`$`-framed). Bytes that are neither are skipped up to the next plausible frame and counted: some
cameras send junk. Our own RTCP goes the other way `$`-framed too (`encode_interleaved`), between
our requests and our answers to the server's (`encode_response`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from collector.numbers import ascii_int

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024


class ProtocolError(Exception):
    """The server sent something that cannot be RTSP."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names; a repeated header keeps its values joined by ", "
    body: bytes = b""
    auth_challenges: tuple[str, ...] = ()  # every WWW-Authenticate value, in order

    @property
    def cseq(self) -> int | None:
        value = self.headers.get("cseq", "").strip()
        return ascii_int(value)


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""


class Interleaved(NamedTuple):
    """One `$`-framed packet (a NamedTuple: cheap to make)."""

    channel: int
    payload: bytes


Event = Response | Request | Interleaved


def encode_request(method: str, url: str, headers: dict[str, str]) -> bytes:
    return _encode(f"{method} {url} RTSP/1.0", headers)


def encode_response(status: int, reason: str, headers: dict[str, str]) -> bytes:
    """Our answer to a server's request (RFC 2326 7)."""
    return _encode(f"RTSP/1.0 {status} {reason}", headers)


def _encode(start_line: str, headers: dict[str, str]) -> bytes:
    lines = [start_line, *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")


def encode_interleaved(channel: int, payload: bytes) -> bytes:
    """One `$`-framed packet for the server (our RTCP), RFC 2326 10.12."""
    return b"$" + bytes([channel]) + len(payload).to_bytes(2, "big") + payload


@dataclass(slots=True)
class Framer:
    # What was fed and not yet consumed is `_buf[_pos:]`. `bytes`, not a bytearray: a packet is
    # then sliced out with one copy, and a read that ends on a frame boundary is taken as is.
    _buf: bytes = b""
    _pos: int = 0
    skipped_bytes: int = 0

    def feed(self, data: bytes | bytearray) -> None:
        if self._pos >= len(self._buf):
            self._buf = bytes(data)
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def next_event(self) -> Event | None:
        """The next complete event, or None until more bytes are fed."""
        buf = self._buf
        while self._pos < len(buf):
            pos = self._pos
            if buf[pos] == 0x24:  # '$'
                if len(buf) - pos < 4:
                    return None
                size = (buf[pos + 2] << 8) | buf[pos + 3]
                end = pos + 4 + size
                if end > len(buf):
                    return None
                self._pos = end
                return Interleaved(buf[pos + 1], buf[pos + 4 : end])
            if _looks_like_message(buf, pos):
                return self._message()
            self._resync()
        return None

    def _resync(self) -> None:
        """Skip junk up to the next '$' or 'RTSP/' (or to the end of what we have)."""
        buf, start = self._buf, self._pos + 1
        candidates = [i for i in (buf.find(b"$", start), buf.find(b"RTSP/", start)) if i >= 0]
        nxt = min(candidates) if candidates else max(start, len(buf) - 4)
        self.skipped_bytes += nxt - self._pos
        self._pos = nxt

    def _message(self) -> Event | None:
        buf, pos = self._buf, self._pos
        head_end = buf.find(b"\r\n\r\n", pos, pos + MAX_HEADER_BYTES)
        if head_end < 0:
            if len(buf) - pos >= MAX_HEADER_BYTES:
                raise ProtocolError("RTSP header longer than 64 KiB")
            return None
        lines = bytes(buf[pos:head_end]).decode("utf-8", "replace").split("\r\n")
        headers: dict[str, str] = {}
        challenges: list[str] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                continue
            key, value = name.strip().lower(), value.strip()
            if key == "www-authenticate":
                challenges.append(value)
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise ProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise ProtocolError(f"Content-Length {length} out of bounds")
        body_start = head_end + 4
        if len(buf) - body_start < length:
            return None
        body = bytes(buf[body_start : body_start + length])
        self._pos = body_start + length
        first = lines[0].split(" ", 2)
        if lines[0].startswith("RTSP/"):
            status = ascii_int(first[1], most_digits=3) if len(first) >= 2 else None
            if status is None:
                raise ProtocolError(f"bad status line {lines[0][:80]!r}")
            reason = first[2] if len(first) > 2 else ""
            return Response(status, reason, headers, body, tuple(challenges))
        return Request(first[0], first[1] if len(first) > 1 else "", headers, body)


_METHODS = (b"OPTIONS", b"GET_PARAMETER", b"SET_PARAMETER", b"ANNOUNCE", b"REDIRECT", b"TEARDOWN")


def _looks_like_message(buf: bytes, pos: int) -> bool:
    """Is `pos` the start (or a prefix of the start) of an RTSP response or server request?"""
    for token in (b"RTSP/", *_METHODS):
        have = buf[pos : pos + len(token)]
        if token.startswith(have) if len(have) < len(token) else have == token:
            return True
    return False
