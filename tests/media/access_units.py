"""H.264 and H.265 pictures read back from a recorded file (PyAV), to compare two recordings of one
stream that reached their files by different paths (our client, and `ffmpeg -c copy`).

The two may cut a picture into packets differently (FFmpeg's parser splits a two-slice IDR picture
at the SPS/PPS that GStreamer repeats between its slices, and its MP4 muxer then moves the second
half one tick later, as MP4 needs rising timestamps) and may repeat, move or drop SEI, AUDs and
parameter sets. `access_units()` joins a picture's packets again: a packet whose first slice does
not start the picture (H.264: first_mb_in_slice > 0, Main profile sends slices in order; H.265:
first_slice_segment_in_pic_flag 0) continues the picture before it. `AccessUnit.slices` leaves out
SEI, parameter sets and AUDs and keeps the rest as it is, but for one thing in H.265: FFmpeg's HEVC
parser leaves the zero byte of the next picture's 4-byte start code at the end of each picture
(its packets are one byte longer than the RTP payloads), so trailing zero bytes are dropped. A
NAL unit ends with its rbsp_stop_one_bit, in a non-zero byte, unless an encoder pads a slice with
cabac_zero_words, which x265 does not do.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

START_CODE = re.compile(b"\x00\x00\x01")


@dataclass(frozen=True, slots=True)
class Syntax:
    """What a codec's NAL unit headers say, as far as comparing pictures needs."""

    kind: Callable[[bytes], int]  # the NAL unit type
    not_compared: frozenset[int]  # SEI, parameter sets, access unit delimiters
    parameter_sets: frozenset[int]
    slices: frozenset[int]  # coded slices (and data partitions) of a picture
    starts_picture: Callable[[bytes], bool]  # a slice that is the first of its picture
    strip_trailing_zeros: bool
    length_size_at: int  # where in the avcC/hvcC record the NAL length size (minus 1) is


SYNTAX = {
    "h264": Syntax(
        kind=lambda nal: nal[0] & 0x1F,
        not_compared=frozenset({6, 7, 8, 9}),
        parameter_sets=frozenset({7, 8}),
        slices=frozenset({1, 2, 3, 4, 5}),
        # first_mb_in_slice (the first ue(v) of the slice header) is 0: its bit is 1
        starts_picture=lambda nal: bool(nal[1] & 0x80),
        strip_trailing_zeros=False,
        length_size_at=4,
    ),
    "hevc": Syntax(
        kind=lambda nal: (nal[0] >> 1) & 0x3F,
        not_compared=frozenset({32, 33, 34, 35, 39, 40}),  # VPS, SPS, PPS, AUD, SEI
        parameter_sets=frozenset({32, 33, 34}),
        slices=frozenset(range(32)),
        starts_picture=lambda nal: bool(nal[2] & 0x80),  # first_slice_segment_in_pic_flag
        strip_trailing_zeros=True,
        length_size_at=21,
    ),
}


@dataclass(frozen=True, slots=True)
class AccessUnit:
    seconds: Fraction  # the PTS of its first packet
    end: Fraction  # where its last packet ends (PTS + duration)
    keyframe: bool  # its first packet's flag
    nal_units: tuple[bytes, ...]  # as recorded, without length prefixes or start codes
    codec: str = "h264"  # `SYNTAX`'s key

    @property
    def slices(self) -> tuple[bytes, ...]:
        syntax = SYNTAX[self.codec]
        kept = (n for n in self.nal_units if syntax.kind(n) not in syntax.not_compared)
        return tuple(n.rstrip(b"\x00") for n in kept) if syntax.strip_trailing_zeros else (
            tuple(kept))

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:
        syntax = SYNTAX[self.codec]
        return tuple(n for n in self.nal_units if syntax.kind(n) in syntax.parameter_sets)


def split_length_prefixed(data: bytes, size: int) -> list[bytes]:
    """NAL units of an AVCC/HVCC (MP4, Matroska) sample whose lengths take `size` bytes."""
    nals, i = [], 0
    while i < len(data):
        n = int.from_bytes(data[i : i + size], "big")
        i += size
        assert n and i + n <= len(data), f"bad NAL length {n} at {i - size} of {len(data)}"
        nals.append(data[i : i + n])
        i += n
    return nals


def split_annex_b(data: bytes) -> list[bytes]:
    """NAL units of an Annex-B (MPEG-TS) packet; the zero byte of 4-byte start codes dropped."""
    return [part.rstrip(b"\x00") for part in START_CODE.split(data)[1:]]


def access_units(path: Path | str) -> list[AccessUnit]:
    """The first video stream's pictures, in file order, each with its packets joined."""
    units: list[AccessUnit] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        syntax = SYNTAX[codec]
        extradata = stream.codec_context.extradata or b""
        # an avcC/hvcC record (configurationVersion 1), else Annex-B packets
        size = (extradata[syntax.length_size_at] & 3) + 1 if extradata[:1] == b"\x01" else 0
        for packet in container.demux(stream):
            if not packet.size:
                continue
            data = bytes(packet)
            nals = split_length_prefixed(data, size) if size else split_annex_b(data)
            first_slice = next((n for n in nals if syntax.kind(n) in syntax.slices), None)
            assert packet.pts is not None and packet.time_base is not None
            start = packet.pts * packet.time_base
            end = start + (packet.duration or 0) * packet.time_base
            if units and first_slice is not None and not syntax.starts_picture(first_slice):
                last = units[-1]
                units[-1] = AccessUnit(seconds=last.seconds, end=max(last.end, end),
                                       keyframe=last.keyframe,
                                       nal_units=last.nal_units + tuple(nals), codec=codec)
            else:
                units.append(AccessUnit(seconds=start, end=end, keyframe=packet.is_keyframe,
                                        nal_units=tuple(nals), codec=codec))
    return units
