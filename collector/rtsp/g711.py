"""G.711 over RTP (RFC 3551: PCMU, payload type 0, and PCMA, 8; or dynamic types by name).

A packet's payload is its samples, one byte each (per channel), so a packet is a unit and its
duration is its sample count. The samples are expanded to 16-bit linear PCM (`pcm_s16le`), which
is lossless (G.711 is a table of 256 of its values): PyAV will not put `pcm_mulaw`/`pcm_alaw`
into Matroska (it checks `avformat_query_codec` at normal compliance, and Matroska keeps them only
as VfW/ACM), while 16-bit PCM is native there (A_PCM/INT/LIT) and in MP4 ('ipcm'). MPEG-TS has no
mapping for PCM: the segment writer leaves such a stream out of .ts files.
"""

from __future__ import annotations

from collections.abc import Callable

from collector.rtsp.rtp import AccessUnit, RtpPacket

ENCODINGS = ("PCMU", "PCMA")


def ulaw_sample(code: int) -> int:
    """The 16-bit linear value of a µ-law byte (ITU-T G.711)."""
    code = ~code & 0xFF
    magnitude = ((((code & 0x0F) << 3) + 0x84) << ((code >> 4) & 0x07)) - 0x84
    return -magnitude if code & 0x80 else magnitude


def alaw_sample(code: int) -> int:
    """The 16-bit linear value of an A-law byte (ITU-T G.711)."""
    code ^= 0x55
    exponent, mantissa = (code >> 4) & 0x07, code & 0x0F
    if exponent == 0:
        magnitude = (mantissa << 4) + 8
    else:
        magnitude = ((mantissa << 4) + 0x108) << (exponent - 1)
    return magnitude if code & 0x80 else -magnitude


def _tables(sample: Callable[[int], int]) -> tuple[bytes, bytes]:
    """`bytes.translate` tables giving each code's low and high byte (little-endian)."""
    values = [sample(code) & 0xFFFF for code in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


TABLES = {"PCMU": _tables(ulaw_sample), "PCMA": _tables(alaw_sample)}


class G711Depacketizer:
    """One unit per packet: its samples as 16-bit little-endian PCM, at the packet's timestamp."""

    def __init__(self, encoding: str) -> None:
        self.low, self.high = TABLES[encoding]
        self.dropped_units = 0

    def push(self, pkt: RtpPacket, timestamp: int, lost: int) -> list[AccessUnit]:
        return self.push_payload(pkt.payload, pkt.marker, timestamp, lost)

    def push_payload(self, payload: bytes, marker: bool, timestamp: int, lost: int
                     ) -> list[AccessUnit]:
        if not payload:
            return []
        return [AccessUnit(timestamp, self.decode(payload), True)]

    def decode(self, payload: bytes) -> bytes:
        """G.711 bytes to 16-bit little-endian samples: two translations and a strided copy, all
        in C (no Python loop per sample)."""
        out = bytearray(2 * len(payload))
        out[0::2] = payload.translate(self.low)
        out[1::2] = payload.translate(self.high)
        return bytes(out)

    def flush(self) -> list[AccessUnit]:
        return []
