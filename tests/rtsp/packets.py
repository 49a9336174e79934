"""Build RTP packets in tests: the sending side of RFC 6184 (H.264) and RFC 3640 (AAC-hbr)."""

from __future__ import annotations

import struct

from collector.rtsp.rtp import RtpPacket, parse_rtp

# A real SPS/PPS pair (x264, Main profile, 320x240, 25 fps in the VUI), as GStreamer sends them.
SPS = bytes.fromhex("674d400dda0507ec0440000003004000000ca3c50aa8")
PPS = bytes.fromhex("68ef0fc8")


def rtp(seq: int, ts: int, payload: bytes, *, marker: bool = False, pt: int = 96,
        ssrc: int = 0x1234) -> bytes:
    header = struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF,
                         ts & 0xFFFFFFFF, ssrc)
    return header + payload


def fu_a(nal: bytes, size: int) -> list[bytes]:
    """Split one NAL unit into FU-A payloads of at most `size` bytes of NAL data each."""
    indicator = (nal[0] & 0xE0) | 28
    body = nal[1:]
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    out = []
    for i, chunk in enumerate(chunks):
        header = nal[0] & 0x1F
        if i == 0:
            header |= 0x80
        if i == len(chunks) - 1:
            header |= 0x40
        out.append(bytes([indicator, header]) + chunk)
    return out


def stap_a(nals: list[bytes]) -> bytes:
    nri = max(n[0] & 0x60 for n in nals)
    return bytes([nri | 24]) + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def h264_frame(nals: list[bytes], seq: int, ts: int, *, mtu: int = 1200) -> list[RtpPacket]:
    """One access unit as RTP packets: small NALs whole, big ones as FU-A; marker on the last."""
    payloads: list[bytes] = []
    for nal in nals:
        payloads += [nal] if len(nal) <= mtu else fu_a(nal, mtu)
    return [
        parse_rtp(rtp(seq + i, ts, p, marker=i == len(payloads) - 1))
        for i, p in enumerate(payloads)
    ]


def aac_payload(frames: list[bytes]) -> bytes:
    """AU-headers-length, one 16-bit AU header per frame (13-bit size, 3-bit index), the frames."""
    headers = b"".join(struct.pack("!H", len(f) << 3) for f in frames)
    return struct.pack("!H", 16 * len(frames)) + headers + b"".join(frames)


def slice_nal(kind: int, size: int, fill: int = 0xAB) -> bytes:
    """A fake slice NAL unit (nal_ref_idc 3) of `size` bytes; its content is never decoded."""
    return bytes([0x60 | kind]) + bytes([fill]) * (size - 1)


def h265_payloads(nal: bytes, mtu: int = 1200) -> list[bytes]:
    """One H.265 NAL unit as RTP payloads: whole if it fits, else fragmentation units (type 49)."""
    if len(nal) <= mtu:
        return [nal]
    kind = (nal[0] >> 1) & 0x3F
    header = bytes([(nal[0] & 0x81) | (49 << 1), nal[1]])
    body = nal[2:]
    chunks = [body[i : i + mtu] for i in range(0, len(body), mtu)]
    return [
        header + bytes([(0x80 if i == 0 else 0) | (0x40 if i == len(chunks) - 1 else 0) | kind])
        + chunk
        for i, chunk in enumerate(chunks)
    ]


def h265_aggregate(nals: list[bytes]) -> bytes:
    """An aggregation packet (type 48) holding small NAL units."""
    header = bytes([48 << 1, 1])
    return header + b"".join(struct.pack("!H", len(n)) + n for n in nals)


def annex_b_nals(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte stream (3- or 4-byte start codes)."""
    parts = data.split(b"\x00\x00\x01")
    return [p[:-1] if p.endswith(b"\x00") else p for p in parts if p.strip(b"\x00")]
