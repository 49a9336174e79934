"""RTP packets (RFC 3550) and the per-stream bookkeeping every depacketizer shares.

`RtpTrack.accept()` checks a packet's sequence number (a forward gap counts as loss, a repeated or
late packet is dropped: over TCP that is a server bug, not reordering) and extends its 32-bit
timestamp into a monotonic 64-bit clock, so wrap-around is invisible downstream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import NamedTuple

_HEADER = struct.Struct("!BBHII")
SEQUENCE_AND_TIMESTAMP = struct.Struct("!HI")  # at offset 2 of every RTP header


class RtpError(ValueError):
    """Not a valid RTP packet."""


class RtpPacket(NamedTuple):
    """One RTP packet. A NamedTuple, not a dataclass: one is made for every packet (hundreds a
    second per camera), and a tuple is built several times faster than a frozen dataclass."""

    sequence: int
    timestamp: int  # 32-bit, as sent
    marker: bool
    payload_type: int
    ssrc: int
    payload: bytes


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) < 12:
        raise RtpError(f"RTP packet of {len(data)} bytes")
    b0, b1, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}")
    offset = 12 + 4 * (b0 & 0x0F)
    if b0 & 0x10:  # header extension: 16-bit profile, 16-bit length in 32-bit words
        if len(data) < offset + 4:
            raise RtpError("truncated RTP header extension")
        offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
    end = len(data)
    if b0 & 0x20:  # padding: the last byte says how much
        end -= data[-1]
    if offset > end:
        raise RtpError("RTP header longer than the packet")
    return RtpPacket(sequence, timestamp, b1 >= 0x80, b1 & 0x7F, ssrc, data[offset:end])


@dataclass(slots=True)
class RtpTrack:
    """Sequence and timestamp state of one RTP stream."""

    received: int = 0
    lost: int = 0
    dropped: int = 0  # duplicates and late packets
    _next_seq: int | None = None
    _last_ts: int | None = None  # 32-bit
    _ext_ts: int = 0  # extended (64-bit) timestamp of the last accepted packet

    def accept(self, pkt: RtpPacket) -> tuple[int, int] | None:
        """(packets lost just before `pkt`, its extended timestamp), or None to drop it."""
        return self.accept_header(pkt.sequence, pkt.timestamp)

    def accept_header(self, sequence: int, timestamp: int) -> tuple[int, int] | None:
        """`accept` from a packet's sequence number and 32-bit timestamp."""
        gap = 0
        if self._next_seq is not None:
            gap = (sequence - self._next_seq) & 0xFFFF
            if gap >= 0x8000:  # behind us: a duplicate or a late packet
                self.dropped += 1
                return None
        self._next_seq = (sequence + 1) & 0xFFFF
        self.received += 1
        self.lost += gap
        if self._last_ts is None:
            self._ext_ts = timestamp
        elif timestamp != self._last_ts:
            delta = (timestamp - self._last_ts) & 0xFFFFFFFF
            if delta >= 0x80000000:
                delta -= 0x1_0000_0000
            self._ext_ts += delta
        self._last_ts = timestamp
        return gap, self._ext_ts

    @property
    def highest_sequence(self) -> int | None:
        """The 16-bit sequence number of the newest accepted packet (RTCP reports it)."""
        return None if self._next_seq is None else (self._next_seq - 1) & 0xFFFF


RTCP_BYE = 203


def rtcp_has_bye(data: bytes) -> bool:
    """Does this compound RTCP packet hold a BYE (the sender left: the stream ended)?"""
    pos = 0
    while pos + 4 <= len(data):
        if data[pos + 1] == RTCP_BYE:
            return True
        pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


RTCP_SR = 200


def parse_sender_report(data: bytes) -> tuple[float, int] | None:
    """(sender wallclock in NTP seconds, 32-bit RTP time) of a compound packet's sender report."""
    pos = 0
    while pos + 20 <= len(data):
        if data[pos + 1] == RTCP_SR:
            seconds = int.from_bytes(data[pos + 8 : pos + 12], "big")
            fraction = int.from_bytes(data[pos + 12 : pos + 16], "big")
            return seconds + fraction / 2**32, int.from_bytes(data[pos + 16 : pos + 20], "big")
        pos += 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
    return None


def signed32(delta: int) -> int:
    """A difference of two 32-bit RTP times, as the shorter way round."""
    delta &= 0xFFFFFFFF
    return delta - 0x1_0000_0000 if delta >= 0x80000000 else delta


class AccessUnit(NamedTuple):
    """One frame of one stream: `timestamp` is extended RTP time (the stream's clock)."""

    timestamp: int
    data: bytes
    keyframe: bool


class ParameterChange(AccessUnit):
    """An access unit that brings parameter sets (SPS, PPS, VPS) other than the ones before it:
    the codec's parameters change from this unit on. Its own type, so that checking for it costs
    the per-unit path one `type(unit) is ParameterChange`."""

    __slots__ = ()
