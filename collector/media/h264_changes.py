"""New H.264 parameter sets in a stream read through FFmpeg (MPEG-TS over HTTP, HLS).

A camera that switches resolution or profile sends its key frames with a new SPS/PPS in-band.
FFmpeg hands the packets on under the session's first description, so a segment would hold two
picture sizes under one header (players show the second one wrongly). The watch compares the
SPS at the head of each key frame with the one the session was described with; on a change the
PyAV source describes the session anew right before that key frame (as the native RTSP client
does), and every job closes its segment and starts the next one there, with matching extradata.

Only key frames are looked at (one every GOP), and only their first few KiB, where the
parameter sets come before the first slice.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.media.packets import StreamInfo
from collector.rtsp import templates
from collector.rtsp.h264 import parse_sps

HEAD_BYTES = 4096  # an access unit's delimiter, parameter sets and SEI come first
SPS, PPS = 7, 8
START_CODE = b"\x00\x00\x00\x01"


def parameter_sets(data: bytes | memoryview) -> tuple[bytes | None, list[bytes]]:
    """The SPS and the PPSs before the first slice of an Annex B access unit."""
    head = bytes(data[:HEAD_BYTES])
    sps: bytes | None = None
    pps: list[bytes] = []
    start = head.find(b"\x00\x00\x01")
    while start >= 0:
        begin = start + 3
        end = head.find(b"\x00\x00\x01", begin)
        nal = head[begin:] if end < 0 else head[begin:end].rstrip(b"\x00")
        if not nal:
            break
        kind = nal[0] & 0x1F
        if 1 <= kind <= 5:  # a slice: the parameter sets are behind us
            break
        if end < 0:  # cut off by HEAD_BYTES: not whole
            break
        if kind == SPS:
            sps = nal
        elif kind == PPS:
            pps.append(nal)
        start = end
    return sps, pps


@dataclass
class ParameterWatch:
    """One H.264 video stream's parameter sets, as the session was last described with."""

    info: StreamInfo
    sps: bytes | None

    def changed(self, data: bytes | memoryview) -> StreamInfo | None:
        """The stream described anew when the key frame `data` brings another SPS, else None."""
        sps, pps = parameter_sets(data)
        if sps is None or sps == self.sps:
            return None
        if self.sps is None:  # the first one seen is the one the session was described with
            self.sps = sps
            return None
        if not pps:  # not whole here (cut off, or not resent): wait for a key frame that has it
            return None
        self.sps = sps
        try:
            parsed = parse_sps(sps)
        except (ValueError, IndexError):  # unreadable: carry on as described
            return None
        template = templates.video_template(templates.open_holder(), "h264", parsed.width,
                                            parsed.height, parsed.fps)
        self.info = StreamInfo(
            index=self.info.index, kind="video", codec="h264", time_base=self.info.time_base,
            width=parsed.width, height=parsed.height,
            extradata=b"".join(START_CODE + nal for nal in (sps, *pps)), template=template,
        )
        return self.info
