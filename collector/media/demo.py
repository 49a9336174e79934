"""The built-in demo camera: FFmpeg's `testsrc2` encoded to H.264 in-process, paced in real time.

It exists so that a fresh install records real video with no camera and no configuration. It behaves
like a live camera: 320x240 at 10 fps with a key frame every second, produced at wall-clock speed.
"""

from __future__ import annotations

import io
import time
from collections.abc import Mapping
from fractions import Fraction

import av
import trio

from collector.media.opener import PacketSink
from collector.media.packets import MediaPacket, StreamInfo
from collector.media.pyav_source import BATCH_SECONDS

FPS = 10
WIDTH, HEIGHT = 320, 240
TIME_BASE = Fraction(1, FPS)


class DemoOpener:
    def __init__(self, limiter: trio.CapacityLimiter) -> None:
        self.limiter = limiter

    async def run(self, url: str, options: Mapping[str, str], sink: PacketSink) -> None:
        await trio.to_thread.run_sync(self._session, sink, limiter=self.limiter)

    def _session(self, sink: PacketSink) -> None:
        source = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", format="lavfi")
        # The encoder's stream lives in a never-written container: once its header is prepared,
        # its codec parameters (SPS/PPS extradata) serve as the template for segment writers.
        holder = av.open(io.BytesIO(), "w", format="matroska")
        encoder = holder.add_stream("libx264", rate=FPS)
        encoder.width, encoder.height, encoder.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        encoder.codec_context.gop_size = FPS
        encoder.codec_context.max_b_frames = 0
        encoder.codec_context.time_base = TIME_BASE
        encoder.codec_context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0",
        }
        holder.start_encoding()
        info = StreamInfo(
            index=0,
            kind="video",
            codec="h264",
            time_base=TIME_BASE,
            width=WIDTH,
            height=HEIGHT,
            template=encoder,
        )
        with source:
            trio.from_thread.run_sync(sink.opened, (info,))
            started = time.monotonic()
            batch: list[MediaPacket] = []
            flushed_at = started
            for n, frame in enumerate(source.decode(video=0)):
                frame.pts, frame.time_base = n, TIME_BASE
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in encoder.encode(frame.reformat(format="yuv420p")):
                    batch.append(
                        MediaPacket(
                            stream=0,
                            data=bytes(packet),
                            pts=packet.pts,
                            dts=packet.dts,
                            duration=1,
                            keyframe=packet.is_keyframe,
                            time_base=TIME_BASE,
                        )
                    )
                delay = started + (n + 1) / FPS - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                trio.from_thread.check_cancelled()
                now = time.monotonic()
                if batch and now - flushed_at >= BATCH_SECONDS:
                    trio.from_thread.run_sync(sink.packets, batch)
                    batch, flushed_at = [], now
