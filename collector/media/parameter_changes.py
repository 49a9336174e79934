"""New H.264 or H.265 parameter sets in a stream read through FFmpeg (MPEG-TS over HTTP, HLS;
H.264 in FLV over HTTP or RTMP).

A camera that switches resolution or profile sends its key frames with new parameter sets in-band.
FFmpeg hands the packets on under the session's first description, so a segment would hold two
picture sizes under one header (players show the second one wrongly). The watch compares the
SPS at the head of each key frame with the one the session was described with; on a change the
PyAV source describes the session anew right before that key frame (as the native RTSP client
does), and every job closes its segment and starts the next one there, with matching extradata
(Annex B: H.264's SPS and PPSs, H.265's VPS, SPS and PPSs, as the RTSP client gives them).

Only key frames are looked at (one every GOP), and only their first few KiB, where the
parameter sets come before the first slice.

FLV (and RTMP, which carries it) sends H.264's parameter sets out of band instead, in an AVC
sequence header; FFmpeg hands a new one on as the next video packet's new-extradata side data,
and nothing else changes (`ExtradataWatch`). The new header becomes the stream's extradata as it
is: FLV's frames are length-prefixed, as that record (avcC) says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from collector.media.packets import StreamInfo
from collector.rtsp import h264, h265, templates

HEAD_BYTES = 4096  # an access unit's delimiter, parameter sets and SEI come first
START_CODE = b"\x00\x00\x00\x01"


@dataclass(frozen=True, slots=True)
class _Syntax:
    """How one codec's NAL unit headers say what they hold, and how its SPS reads."""

    shift: int
    mask: int
    slices: range  # NAL types of coded slices: the parameter sets come before them
    vps: int | None
    sps: int
    pps: int
    parse_sps: Callable[[bytes], h264.SpsInfo]


SYNTAX = {
    "h264": _Syntax(shift=0, mask=0x1F, slices=range(1, 6), vps=None, sps=h264.NAL_SPS,
                    pps=h264.NAL_PPS, parse_sps=h264.parse_sps),
    "hevc": _Syntax(shift=1, mask=0x3F, slices=range(0, 32), vps=h265.NAL_VPS, sps=h265.NAL_SPS,
                    pps=h265.NAL_PPS, parse_sps=h265.parse_sps),
}


@dataclass(frozen=True, slots=True)
class ParameterSets:
    vps: bytes | None  # H.265 only
    sps: bytes | None
    pps: tuple[bytes, ...]


def parameter_sets(data: bytes | memoryview, codec: str = "h264") -> ParameterSets:
    """The VPS (H.265), SPS and PPSs before the first slice of an Annex B access unit."""
    syntax = SYNTAX[codec]
    head = bytes(data[:HEAD_BYTES])
    vps: bytes | None = None
    sps: bytes | None = None
    pps: list[bytes] = []
    start = head.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        end = head.find(b"\x00\x00\x01", begin)
        nal = head[begin:] if end < 0 else head[begin:end].rstrip(b"\x00")
        if not nal:
            break
        kind = (nal[0] >> syntax.shift) & syntax.mask
        if kind in syntax.slices:  # a slice: the parameter sets are behind us
            break
        if end < 0:  # cut off by HEAD_BYTES: not whole
            break
        if kind == syntax.sps:
            sps = nal
        elif kind == syntax.pps:
            pps.append(nal)
        elif kind == syntax.vps:
            vps = nal
        start = end
    return ParameterSets(vps, sps, tuple(pps))


@dataclass
class ParameterWatch:
    """One H.264 or H.265 video stream's parameter sets, as the session was last described
    with (`info.codec`: "h264" or "hevc")."""

    info: StreamInfo
    sps: bytes | None
    vps: bytes | None = None  # H.265: the last one seen, for a key frame that resends no VPS

    def changed(self, data: bytes | memoryview) -> StreamInfo | None:
        """The stream described anew when the key frame `data` brings another SPS, else None."""
        codec = self.info.codec
        found = parameter_sets(data, codec)
        if found.vps is not None:
            self.vps = found.vps
        sps = found.sps
        if sps is None or sps == self.sps:
            return None
        if self.sps is None:  # the first one seen is the one the session was described with
            self.sps = sps
            return None
        if not found.pps or (codec == "hevc" and self.vps is None):
            return None  # not whole here (cut off, or not resent): wait for a key frame that is
        self.sps = sps
        try:
            parsed = SYNTAX[codec].parse_sps(sps)
        except (ValueError, IndexError):  # unreadable: carry on as described
            return None
        fps = parsed.fps or _rate(self.info)  # an H.265 SPS does not say: the rate so far
        template = templates.video_template(templates.open_holder(), codec, parsed.width,
                                            parsed.height, fps)
        sets = (self.vps, sps, *found.pps)  # (no VPS in H.264)
        self.info = StreamInfo(
            index=self.info.index, kind="video", codec=codec, time_base=self.info.time_base,
            width=parsed.width, height=parsed.height,
            extradata=b"".join(START_CODE + nal for nal in sets if nal is not None),
            template=template,
        )
        return self.info


def avcc_parameter_sets(record: bytes) -> ParameterSets:
    """The first SPS and the PPSs of an AVCDecoderConfigurationRecord (avcC); no SPS if it is
    not one, or is cut short."""

    def units(at: int, count: int) -> tuple[list[bytes], int]:  # each: 16-bit size, NAL unit
        found = []
        for _ in range(count):
            size = int.from_bytes(record[at:at + 2], "big")
            unit = record[at + 2:at + 2 + size]
            if not size or len(unit) != size:
                raise ValueError("cut short")
            found.append(unit)
            at += 2 + size
        return found, at

    try:
        if record[0] != 1:
            raise ValueError("not version 1")
        sps, at = units(6, record[5] & 0x1F)
        pps, _ = units(at + 1, record[at])
    except (IndexError, ValueError):
        return ParameterSets(None, None, ())
    return ParameterSets(None, sps[0] if sps else None, tuple(pps))


@dataclass
class ExtradataWatch:
    """An H.264 stream whose new parameter sets come out of band (FLV, RTMP), as the session was
    last described with (`extradata`: its avcC record)."""

    info: StreamInfo
    extradata: bytes | None

    def changed(self, extradata: bytes) -> StreamInfo | None:
        """The stream described anew by the sequence header `extradata`, if it is another."""
        if extradata == self.extradata:
            return None
        sets = avcc_parameter_sets(extradata)
        if sets.sps is None or not sets.pps:
            return None  # not one we can read: carry on as described
        try:
            parsed = h264.parse_sps(sets.sps)
        except (ValueError, IndexError):
            return None
        self.extradata = extradata
        template = templates.video_template(templates.open_holder(), "h264", parsed.width,
                                            parsed.height, parsed.fps or _rate(self.info))
        self.info = StreamInfo(
            index=self.info.index, kind="video", codec="h264", time_base=self.info.time_base,
            width=parsed.width, height=parsed.height, extradata=extradata, template=template)
        return self.info


def _rate(info: StreamInfo) -> float | None:
    """The frame rate `info` was described with (FFmpeg's guess, on the template's codec
    context: a template made from a demuxed stream has no stream rates of its own)."""
    template = info.template
    if template is None:
        return None
    rate = template.codec_context.framerate or template.average_rate or template.base_rate
    return float(rate) if rate else None
