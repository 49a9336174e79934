"""`rtsps://` on trio's TLS (`trio.SSLStream`): which context, the handshake, and batched reads.

Certificates are verified by default (the system's trust store, plus the certificates of
`COLLECTOR_RTSPS_CA_FILE` when set: `context_trusting`) with the host name checked; the source
option `tls_verify=0` turns both off for a camera with a self-signed certificate. A failed
handshake becomes `SourceUnavailable(reason="tls")` that says what was wrong (for a refused
certificate, also which option turns the check off).

Why not `SSLStream` alone: OpenSSL's `SSL_read` never returns more than one TLS record, and a
camera writes a record per RTP packet, so every `receive_some` would hand back one packet and the
read loop, which reads a few times a second, would fall behind. `TlsStream.receive_some` instead
does what a read does on plain TCP: one large socket read (`_Transport`), then it decrypts every
record that read brought and returns them together (a cancel while it does so loses them: only
the end of a session cancels a read). The SSLStream is closed without waiting for the server's
close_notify (`https_compatible`): a camera that just closes TCP has ended, as on `rtsp://`, and a
torn interleaved frame at the end is dropped by the framing anyway.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from functools import cache

import trio

from collector.config import ConfigError
from collector.errors import SourceError, SourceUnavailable


@cache
def default_context() -> ssl.SSLContext:
    """The system's trust store, host names checked; made once (loading it takes ~25 ms)."""
    return ssl.create_default_context()


@cache
def unverified_context() -> ssl.SSLContext:
    """For `tls_verify=0`: encrypted, but any certificate for any name is accepted."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def context_trusting(ca_file: str) -> ssl.SSLContext:
    """The system's trust store plus the certificates in `ca_file` (PEM; a camera vendor's or a
    site's own CA), host names checked. Raises ConfigError if the file cannot be used."""
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"COLLECTOR_RTSPS_CA_FILE={ca_file!r}: cannot load it: {exc}") from None
    return context


def verifies(options: Mapping[str, str]) -> bool:
    """Does this source want its certificate checked? Only `tls_verify=0` says no."""
    return str(options.get("tls_verify", "1")).strip() != "0"


class _Drained(Exception):
    """Raised through SSLStream when it wants more bytes while `TlsStream` only drains."""


class _Transport(trio.abc.Stream):
    """The TCP stream under the SSLStream: large reads, and none while `TlsStream` drains."""

    def __init__(self, stream: trio.abc.Stream, receive_bytes: int) -> None:
        self.stream, self.receive_bytes = stream, receive_bytes
        self.draining = False
        self.last_read_full = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.draining:
            raise _Drained
        data = await self.stream.receive_some(self.receive_bytes)
        self.last_read_full = len(data) == self.receive_bytes
        return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.stream.aclose()


class TlsStream(trio.abc.Stream):
    """A client SSLStream whose `receive_some` returns all that one socket read brought."""

    def __init__(self, stream: trio.abc.Stream, context: ssl.SSLContext, server_hostname: str,
                 receive_bytes: int) -> None:
        self._transport = _Transport(stream, receive_bytes)
        self.ssl = trio.SSLStream(self._transport, context, server_hostname=server_hostname,
                                  https_compatible=True)
        self._eof = False

    @property
    def last_read_full(self) -> bool:
        """Did the last socket read fill its buffer (the kernel may hold more)?"""
        return self._transport.last_read_full

    async def do_handshake(self) -> None:
        await self.ssl.do_handshake()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._eof:
            await trio.lowlevel.checkpoint()
            return b""
        first = await self.ssl.receive_some(max_bytes)
        if not first:
            self._eof = True
            return first
        chunks, size = [first], len(first)
        self._transport.draining = True
        try:
            while max_bytes is None or size < max_bytes:
                try:
                    chunk = await self.ssl.receive_some(None if max_bytes is None
                                                        else max_bytes - size)
                except _Drained:  # every complete record of that read is out
                    break
                if not chunk:  # close_notify among them: hand out the rest first
                    self._eof = True
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            self._transport.draining = False
        return b"".join(chunks)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.ssl.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.ssl.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.ssl.aclose()


def tls_error(exc: BaseException, shown: str) -> SourceError:
    """A failed handshake (trio raises BrokenResourceError from the ssl error) in our terms."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = str(cause.verify_message or cause.reason).rstrip(".")
        return SourceUnavailable(
            f"TLS certificate of {shown} not accepted: {why} (the source option tls_verify=0 "
            "turns this check off, for a camera with a self-signed certificate)", reason="tls")
    if isinstance(cause, ssl.SSLError):
        return SourceUnavailable(f"TLS handshake with {shown} failed: {cause.reason or cause}",
                                 reason="tls")
    return SourceUnavailable(f"TLS handshake with {shown} failed: connection closed",
                             reason="tls")
