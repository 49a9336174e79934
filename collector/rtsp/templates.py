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
from typing import Any, cast

import av
import av.error
from av.audio.stream import AudioStream

from collector.errors import UnsupportedSource

HOLDER_FORMAT = "matroska"


def open_holder() -> Any:
    # never written: a small I/O buffer (PyAV's default is 32 KiB, and there is a holder a session)
    return av.open(io.BytesIO(), "w", format=HOLDER_FORMAT, buffer_size=4096)


def video_template(holder: Any, codec: str, width: int, height: int, fps: float | None) -> Any:
    rate = Fraction(fps).limit_denominator(1001) if fps else None
    return holder.add_stream(codec, rate=rate, width=width, height=height)



MAX_AUDIO_CHANNELS = 8  # 7.1: what AAC's channel configurations and the muxers we use go up to


@functools.cache
def audio_template(sample_rate: int, channels: int, codec: str = "aac") -> Any:
    """An audio template with the right rate and channel count, one per distinct format in the
    process, shared by every session (the muxers only read it; its extradata is replaced by the
    stream's own config in every segment writer).

    It is the stream of a one-frame in-memory file opened for reading, so its codec is the
    decoder: a segment writer copies the template's codec context, and the AAC encoder's is
    ~550 KiB (its quantizer cache) against ~36 KiB for the decoder's, once per open segment.
    Making it encodes one silent frame (~2-4 ms, once per format). The frame is made packed (one
    plane) and converted: PyAV miscounts the planes of a planar frame of 8 channels and writing
    them crashed the process. A format we cannot make (a camera's SDP chooses it) is refused:
    that audio track is then not set up (`session.choose_tracks`), the rest is recorded.
    """
    if not 0 <= channels <= MAX_AUDIO_CHANNELS:
        raise UnsupportedSource(f"{channels} audio channels (at most {MAX_AUDIO_CHANNELS})",
                                reason="codec")
    layout = {0: "stereo", 1: "mono", 2: "stereo", 8: "7.1"}.get(channels, f"{channels}c")
    buf = io.BytesIO()
    try:
        with av.open(buf, "w", format=HOLDER_FORMAT) as out:
            stream = cast(AudioStream, out.add_stream(codec, rate=sample_rate, layout=layout))
            ctx = stream.codec_context
            packed = av.AudioFormat(ctx.format.name).packed
            frame = av.AudioFrame(format=packed.name, layout=layout, samples=ctx.frame_size or 1024)
            frame.planes[0].update(bytes(frame.planes[0].buffer_size))
            frame.sample_rate, frame.pts = sample_rate, 0
            resampler = av.AudioResampler(format=ctx.format.name, layout=layout, rate=sample_rate)
            for converted in resampler.resample(frame):
                out.mux(stream.encode(converted))
            out.mux(stream.encode(None))
        return av.open(io.BytesIO(buf.getvalue())).streams.audio[0]  # the stream keeps its file
    except (ValueError, av.error.FFmpegError) as exc:
        raise UnsupportedSource(
            f"{codec} audio at {sample_rate} Hz with {channels or 2} channels: {exc}",
            reason="codec",
        ) from None
