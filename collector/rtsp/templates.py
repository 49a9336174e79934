"""PyAV stream templates for streams we depacketize ourselves (there is no input container to copy).

A segment writer copies a template's codec parameters (`add_stream_from_template`) and then sets
`StreamInfo.extradata`. PyAV fills a new stream's codec parameters from its codec context when the
stream is added, so what the muxers need (codec id, picture size, frame rate) goes in as
`add_stream` arguments and the video codec context is never opened (no libx264 per camera). The
holder is a never-written in-memory container, like the PyAV source's, so templates outlive the
session.
"""

from __future__ import annotations

import functools
import io
from fractions import Fraction
from typing import Any

import av

HOLDER_FORMAT = "matroska"


def open_holder() -> Any:
    return av.open(io.BytesIO(), "w", format=HOLDER_FORMAT)


def video_template(holder: Any, codec: str, width: int, height: int, fps: float | None) -> Any:
    rate = Fraction(fps).limit_denominator(1001) if fps else None
    return holder.add_stream(codec, rate=rate, width=width, height=height)



@functools.cache
def audio_template(sample_rate: int, channels: int, codec: str = "aac") -> Any:
    """An audio template with the right channel count, one per distinct format in the process.

    PyAV adds audio streams as stereo and copies the codec parameters at that moment, so the layout
    only reaches the parameters when the container starts encoding. That opens the (native, cheap:
    ~1.5 ms) encoder in a holder of its own, and the encoder keeps ~770 KiB: hence one template per
    (rate, channels, codec), shared by every session (the muxers only read it; its extradata is
    replaced by the stream's own config in every segment writer).
    """
    holder = open_holder()
    stream = holder.add_stream(codec, rate=sample_rate)
    if channels:
        stream.codec_context.layout = {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")
    holder.start_encoding()
    return stream
