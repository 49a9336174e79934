"""RTCP receiver reports (RFC 3550 6.4.2), built without I/O: some cameras drop a client that never
sends RTCP (its session times out although keep-alives flow).

Every `interval_s` (5 s) each track gets one compound packet on its interleaved RTCP channel: an RR
then an SDES with our CNAME (RFC 3550 6.1: every compound packet carries one). The RR's report
block about the camera's stream says:

- SSRC: the sender's, from its latest sender report, else from the SETUP Transport's `ssrc=`.
  With neither the RR has no block (RC=0, which 6.4.2 allows): it still tells the camera we live.
- fraction lost since the previous report and cumulative lost, from `RtpTrack`'s counters (over
  TCP nothing is reordered, so a sequence gap is a loss and a packet from behind is a duplicate);
- extended highest sequence number: the first packet's sequence number + received + lost - 1,
  cycles included;
- interarrival jitter 0: the times TCP hands us packets say nothing of the network's jitter;
- LSR and DLSR: the middle 32 bits of the latest sender report's NTP time, and the delay since it
  arrived in 1/65536 s (0 and 0 before any).

`ReceiverReports` holds the session's part (our SSRC, the timer, each channel's `Reception`); the
opener feeds it every RTCP packet and sends what `packets()` returns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from collector.rtsp.rtp import RtpTrack

RTCP_SR, RTCP_RR, RTCP_SDES = 200, 201, 202
SDES_CNAME = 1
INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportBlock:
    ssrc: int  # of the stream reported on
    fraction_lost: int  # 0-255: lost / expected since the last report, times 256
    cumulative_lost: int
    highest_seq: int  # extended: cycles << 16 | sequence number
    jitter: int = 0
    lsr: int = 0  # middle 32 bits of the last sender report's NTP time
    dlsr: int = 0  # 1/65536 s since that report arrived

    def encode(self) -> bytes:
        lost = max(-0x800000, min(self.cumulative_lost, 0x7FFFFF)) & 0xFFFFFF
        return b"".join((
            self.ssrc.to_bytes(4, "big"),
            bytes([max(0, min(self.fraction_lost, 255))]),
            lost.to_bytes(3, "big"),
            (self.highest_seq & 0xFFFFFFFF).to_bytes(4, "big"),
            self.jitter.to_bytes(4, "big"),
            self.lsr.to_bytes(4, "big"),
            min(self.dlsr, 0xFFFFFFFF).to_bytes(4, "big"),
        ))


def receiver_report(reporter: int, blocks: tuple[ReportBlock, ...] = ()) -> bytes:
    """An RR packet from SSRC `reporter` with up to 31 report blocks."""
    body = reporter.to_bytes(4, "big") + b"".join(b.encode() for b in blocks[:31])
    return _header(min(len(blocks), 31), RTCP_RR, body) + body


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one chunk: our CNAME, null-terminated and padded to 32 bits."""
    text = cname.encode("utf-8")[:255]
    chunk = ssrc.to_bytes(4, "big") + bytes([SDES_CNAME, len(text)]) + text + b"\x00"
    chunk += bytes(-len(chunk) % 4)
    return _header(1, RTCP_SDES, chunk) + chunk


def _header(count: int, packet_type: int, body: bytes) -> bytes:
    words = (4 + len(body)) // 4 - 1
    return bytes([0x80 | count, packet_type]) + words.to_bytes(2, "big")


@dataclass(frozen=True, slots=True)
class SenderInfo:
    ssrc: int
    ntp_middle: int  # the middle 32 bits of its NTP timestamp (what LSR echoes)


def sender_reports(data: bytes) -> Iterator[SenderInfo]:
    """The sender reports in a compound RTCP packet."""
    pos = 0
    while pos + 4 <= len(data):
        end = pos + 4 + 4 * int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == RTCP_SR and pos + 16 <= min(end, len(data)):
            ntp = int.from_bytes(data[pos + 8 : pos + 16], "big")
            yield SenderInfo(int.from_bytes(data[pos + 4 : pos + 8], "big"),
                             (ntp >> 16) & 0xFFFFFFFF)
        pos = end


@dataclass(slots=True)
class Reception:
    """What one track's report needs beyond RtpTrack's counters."""

    source_ssrc: int | None = None
    last_sr: int = 0  # middle 32 bits of the latest sender report's NTP time
    last_sr_at: float | None = None  # when it arrived (trio clock)
    _prior_expected: int = 0
    _prior_received: int = 0

    def note_sender_report(self, info: SenderInfo, now: float) -> None:
        self.source_ssrc, self.last_sr, self.last_sr_at = info.ssrc, info.ntp_middle, now

    def block(self, rtp: RtpTrack, now: float) -> ReportBlock | None:
        """The report block for now (and the start of the next interval), None without SSRC."""
        highest = rtp.highest_sequence
        if self.source_ssrc is None or highest is None:
            return None
        expected = rtp.received + rtp.lost
        first = (highest - expected + 1) & 0xFFFF
        expected_interval = expected - self._prior_expected
        lost_interval = expected_interval - (rtp.received - self._prior_received)
        self._prior_expected, self._prior_received = expected, rtp.received
        fraction = (lost_interval << 8) // expected_interval if expected_interval > 0 else 0
        dlsr = 0 if self.last_sr_at is None else round((now - self.last_sr_at) * 65536)
        return ReportBlock(ssrc=self.source_ssrc, fraction_lost=max(fraction, 0),
                           cumulative_lost=rtp.lost, highest_seq=first + expected - 1,
                           lsr=self.last_sr, dlsr=max(dlsr, 0))


@dataclass(slots=True)
class ReceiverReports:
    """A session's receiver reports: our SSRC, each RTCP channel's `Reception`, the timer."""

    interval_s: float = INTERVAL_S
    ssrc: int = field(default_factory=lambda: int.from_bytes(os.urandom(4), "big"))
    receptions: dict[int, Reception] = field(default_factory=dict)  # by RTCP channel
    next_at: float | None = None
    sent: int = 0

    @property
    def cname(self) -> str:
        return f"camera-collector-{self.ssrc:08x}"

    def expect(self, channel: int, ssrc: int | None) -> None:
        """A track's RTCP channel, with the SSRC its SETUP answer announced (if any)."""
        self.receptions[channel] = Reception(source_ssrc=ssrc)

    def note_rtcp(self, channel: int, data: bytes, now: float) -> None:
        """An RTCP packet from the camera: remember its latest sender report."""
        reception = self.receptions.setdefault(channel, Reception())
        for info in sender_reports(data):
            reception.note_sender_report(info, now)

    def due(self, now: float) -> bool:
        """Is it time to report? The first call starts the clock: the first report is one
        interval after streaming began."""
        if self.next_at is None:
            self.next_at = now + self.interval_s
        return now >= self.next_at

    def packets(self, tracks: Mapping[int, RtpTrack], now: float) -> list[tuple[int, bytes]]:
        """(RTCP channel, compound RR + SDES) for each track, keyed by its RTCP channel; the next
        report is due one interval after this one was (the loop's wake-ups make each a little
        late, which must not add up), or after now when we fell a whole interval behind."""
        due = now if self.next_at is None or now - self.next_at >= self.interval_s else self.next_at
        self.next_at = due + self.interval_s
        sdes = sdes_cname(self.ssrc, self.cname)
        out = []
        for channel, rtp in tracks.items():
            block = self.receptions.setdefault(channel, Reception()).block(rtp, now)
            out.append((channel, receiver_report(self.ssrc, (block,) if block else ()) + sdes))
        self.sent += len(out)
        return out
