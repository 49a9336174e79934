"""H.264 pictures read back from a recorded file (PyAV), to compare two recordings of one stream
that reached their files by different paths (our client, and `ffmpeg -c copy`).

The two may cut a picture into packets differently (FFmpeg's parser splits a two-slice IDR picture
at the SPS/PPS that GStreamer repeats between its slices, and its MP4 muxer then moves the second
half one tick later, as MP4 needs rising timestamps) and may repeat, move or drop SEI, AUDs and
parameter sets. `access_units()` joins a picture's packets again: a packet whose first slice does
not start at macroblock 0 continues the picture before it (Main profile sends slices in order).
`AccessUnit.slices` leaves out SEI, SPS, PPS and AUD (NAL types 6-9) and keeps the rest as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

NOT_COMPARED = frozenset({6, 7, 8, 9})  # SEI, SPS, PPS, access unit delimiter
PARAMETER_SETS = frozenset({7, 8})
SLICES = frozenset({1, 2, 3, 4, 5})  # coded slices (and data partitions) of a picture
START_CODE = re.compile(b"\x00\x00\x01")


@dataclass(frozen=True, slots=True)
class AccessUnit:
    seconds: Fraction  # the PTS of its first packet
    end: Fraction  # where its last packet ends (PTS + duration)
    keyframe: bool  # its first packet's flag
    nal_units: tuple[bytes, ...]  # as recorded, without length prefixes or start codes

    @property
    def slices(self) -> tuple[bytes, ...]:
        return tuple(n for n in self.nal_units if n[0] & 0x1F not in NOT_COMPARED)

    @property
    def parameter_sets(self) -> tuple[bytes, ...]:
        return tuple(n for n in self.nal_units if n[0] & 0x1F in PARAMETER_SETS)


def split_length_prefixed(data: bytes, size: int) -> list[bytes]:
    """NAL units of an AVCC (MP4, Matroska) sample whose lengths take `size` bytes."""
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


def starts_picture(nal: bytes) -> bool:
    """A slice whose first_mb_in_slice (the first ue(v) of its header) is 0: its bit is 1."""
    return bool(nal[1] & 0x80)


def access_units(path: Path | str) -> list[AccessUnit]:
    """The first video stream's pictures, in file order, each with its packets joined."""
    units: list[AccessUnit] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        extradata = stream.codec_context.extradata or b""
        avcc = extradata[:1] == b"\x01"  # an avcC record, else Annex-B packets
        size = (extradata[4] & 3) + 1 if avcc else 0
        for packet in container.demux(stream):
            if not packet.size:
                continue
            data = bytes(packet)
            nals = split_length_prefixed(data, size) if avcc else split_annex_b(data)
            first_slice = next((n for n in nals if n[0] & 0x1F in SLICES), None)
            assert packet.pts is not None and packet.time_base is not None
            start = packet.pts * packet.time_base
            end = start + (packet.duration or 0) * packet.time_base
            if units and first_slice is not None and not starts_picture(first_slice):
                last = units[-1]
                units[-1] = AccessUnit(seconds=last.seconds, end=max(last.end, end),
                                       keyframe=last.keyframe,
                                       nal_units=last.nal_units + tuple(nals))
            else:
                units.append(AccessUnit(seconds=start, end=end, keyframe=packet.is_keyframe,
                                        nal_units=tuple(nals)))
    return units
