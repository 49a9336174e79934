"""The RTSP client against the real GStreamer server (tests/media) with what cameras send besides
plain H.264 + AAC: B-frames, a picture size that changes mid-stream, G.711 audio. Every file is
checked with ffprobe/ffmpeg."""

from __future__ import annotations

import json
import subprocess
from functools import partial
from itertools import pairwise
from pathlib import Path

import pytest
import trio

from collector.media.cutting import CutPlan
from collector.media.packets import MediaPacket, SessionInfo, StreamInfo
from collector.media.recorder import Recorder
from tests.media.clips import ClipInfo, make_clip, make_switching_clip
from tests.media.probe import count_frames, decode_errors, packets, probe
from tests.media.servers import serve_rtsp
from tests.rtsp.test_real_server import CEILING, record, record_served, write_file

FPS, FRAME = 25, 3600
FORMATS = ("mp4", "mkv", "ts")


@pytest.fixture(scope="module")
def bframe_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipInfo:
    """8 s of 320x240 25 fps H.264 with 2 B-frames (x264 B-pyramid: reordered two deep), + AAC.
    MPEG-TS: its 90 kHz timestamps reach RTP exact (Matroska's are whole milliseconds, and
    GStreamer moves the first frame of such a file by 21 ms)."""
    return make_clip(tmp_path_factory.mktemp("bframes") / "clip.ts", seconds=8, bframes=2,
                     container="ts")


@pytest.fixture(scope="module")
def switching_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipInfo:
    """12 s of video: 4 s at 320x240, 4 s at 480x360, 4 s at 320x240 (MPEG-TS)."""
    return make_switching_clip(tmp_path_factory.mktemp("switch") / "clip.ts",
                               ("320x240", "480x360", "320x240"))


async def test_b_frames_get_decoding_times_muxers_accept(bframe_clip: ClipInfo, tmp_path: Path):
    """A B-pyramid stream: every frame arrives; decoding times are the presentation times in
    order, two frames earlier (the SPS's reorder depth). Recorded as a job does (cut plan,
    recorder), MP4, Matroska and MPEG-TS segments hold every frame 1/25 s apart, with rising DTS
    and PTS >= DTS (MP4, MPEG-TS: Matroska stores no DTS), and decode without an error."""
    sink = await record_served(bframe_clip.path)
    frames = [p for p in sink.packets_ if p.stream == 0]
    assert len(frames) == bframe_clip.frames
    shown = sorted(p.pts for p in frames)  # type: ignore[type-var]
    assert {b - a for a, b in pairwise(shown)} == {FRAME}
    assert [p.pts for p in frames] != shown  # reordered: the test means something
    assert [p.dts for p in frames] == [pts - 2 * FRAME for pts in shown]
    recorders = Recorders(tmp_path)
    recorders.opened(sink.streams)
    await trio.to_thread.run_sync(recorders.packets, sink.packets_)
    recorders.stop()
    for fmt, (segment,) in recorders.results.items():
        assert segment.frames == bframe_clip.frames, fmt
        muxed = await trio.to_thread.run_sync(packets, segment.path)
        assert len(muxed) == bframe_clip.frames, fmt
        shown_s = sorted(p.pts_time for p in muxed)  # type: ignore[type-var]
        assert {round(b - a, 3) for a, b in pairwise(shown_s)} == {0.04}, fmt
        if fmt != "mkv":  # Matroska stores no decoding times (FFmpeg reads none back)
            dts = [p.dts_time for p in muxed]
            assert all(b > a for a, b in pairwise(dts)), fmt  # type: ignore[operator]
            assert all(p.pts_time >= p.dts_time for p in muxed), fmt  # type: ignore[operator]
        assert await trio.to_thread.run_sync(count_frames, segment.path) == bframe_clip.frames
        assert await trio.to_thread.run_sync(decode_errors, segment.path) == "", fmt


class Recorders:
    """A sink that records like a job does: a `Recorder` per format, a new session at every
    `opened` (what the camera actor sends subscribers), a segment cut at the first key frame
    at or after every `segment_seconds`."""

    def __init__(self, folder: Path, segment_seconds: float = 600) -> None:
        self.recorders = {fmt: Recorder(folder / fmt, fmt, CutPlan(
                              duration=600, segment_seconds=segment_seconds))
                          for fmt in FORMATS}
        self.sessions = 0
        self.results: dict[str, list] = {fmt: [] for fmt in FORMATS}

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False) -> None:
        self.sessions += 1
        for fmt, recorder in self.recorders.items():
            progress = recorder.new_session(SessionInfo(session=self.sessions, streams=streams))
            self.results[fmt] += progress.segments

    def packets(self, batch: list[MediaPacket]) -> None:
        for fmt, recorder in self.recorders.items():
            self.results[fmt] += recorder.write(batch).segments

    def stop(self) -> None:
        for fmt, recorder in self.recorders.items():
            self.results[fmt] += recorder.stop("end").segments


def frame_sizes(path: Path) -> list[tuple[int, int]]:
    """The size of every decoded video frame."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "frame=width,height", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return [(f["width"], f["height"]) for f in json.loads(out)["frames"]]


def check_cut_at_the_size_change(job: dict, sizes: list[tuple[int, int]]) -> None:
    """A job that recorded a 320x240 -> 480x360 switch after 4 s (6 s in one long segment):
    one connection, two files, each of one size from its first frame, decoding cleanly."""
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    segments = source["segments"]
    assert [(s["frames"], s["end_reason"]) for s in segments] == [(100, "discontinuity"),
                                                                  (50, "end")]
    assert source["attempts"] == 1  # new codec parameters on the same connection: no attempt
    for seg, size in zip(segments, sizes, strict=True):
        path = Path(seg["path"])
        assert frame_sizes(path) == [size] * seg["frames"]
        assert decode_errors(path) == ""


async def test_picture_size_change_starts_a_segment_per_size(switching_clip: ClipInfo,
                                                             tmp_path: Path):
    """The camera switches 320x240 -> 480x360 -> 320x240 every 4 s: the session is described
    three times, each before the key frame with the new SPS, so a job's recorder cuts a segment
    at each switch; in every format each segment holds one size from its first frame to its
    last (100 frames), says that size in its header, and decodes without an error."""
    sink = Recorders(tmp_path)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_rtsp, switching_clip.path)
        with trio.fail_after(CEILING):
            await record(server.url(), sink)  # type: ignore[arg-type]
        nursery.cancel_scope.cancel()
    sink.stop()
    assert sink.sessions == 3
    sizes = [(320, 240), (480, 360), (320, 240)]
    for fmt, segments in sink.results.items():
        assert [s.reason for s in segments] == ["discontinuity", "discontinuity", "end"], fmt
        assert [s.frames for s in segments] == [100, 100, 100], fmt
        for segment, size in zip(segments, sizes, strict=True):
            info = await trio.to_thread.run_sync(
                partial(subprocess.run, ["ffprobe", "-v", "error", "-select_streams", "v",
                                         "-show_entries", "stream=width,height", "-of", "json",
                                         str(segment.path)], capture_output=True, check=True))
            header = json.loads(info.stdout)["streams"][0]
            assert (header["width"], header["height"]) == size, (fmt, segment.path)
            assert await trio.to_thread.run_sync(frame_sizes, segment.path) == [size] * 100
            assert await trio.to_thread.run_sync(decode_errors, segment.path) == "", fmt


def audio_samples(path: Path) -> int:
    """Decoded samples of the file's audio."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-f", "s16le",
                          "-"], capture_output=True, check=True).stdout
    return len(pcm) // 2


@pytest.mark.parametrize("law", ["pcmu", "pcma"])
async def test_g711_from_gstreamer(media_clip: ClipInfo, law: str, tmp_path: Path):
    """GStreamer's rtppcmupay/rtppcmapay (static payload types 0 and 8): the audio opens as
    16-bit PCM at 8 kHz, its packets follow each other without a gap, 12 s of samples in all;
    Matroska and MP4 hold exactly the samples written, MPEG-TS has no audio; every file holds
    every video frame and decodes without an error."""
    sink = await record_served(media_clip.path, audio=law)
    _, audio = sink.streams
    assert (audio.kind, audio.codec, audio.sample_rate) == ("audio", "pcm_s16le", 8000)
    sound = [p for p in sink.packets_ if p.stream == 1]
    assert all(p.duration == len(p.data) // 2 for p in sound)
    # GStreamer packs ~21.3 ms (170-171 samples) a packet and rounds its timestamps: a packet
    # may start one sample off where the one before it ended, never more.
    assert all(abs(b.pts - a.pts - a.duration) <= 1 for a, b in pairwise(sound))  # type: ignore[operator]
    total = sum(p.duration for p in sound)
    assert abs(total - 8000 * media_clip.seconds) <= 2 * max(p.duration for p in sound)
    first = next(i for i, p in enumerate(sink.packets_) if p.stream == 0 and p.keyframe)
    written = sum(p.duration for p in sink.packets_[first:] if p.stream == 1)
    for fmt in FORMATS:
        path = tmp_path / f"out.{fmt}"
        assert await trio.to_thread.run_sync(write_file, path, sink) == media_clip.frames
        info = await trio.to_thread.run_sync(probe, path)
        assert info.video is not None and info.video.nb_read_frames == media_clip.frames, fmt
        assert await trio.to_thread.run_sync(decode_errors, path) == "", fmt
        if fmt == "ts":
            assert [s.codec_type for s in info.streams] == ["video"]
            continue
        assert info.audio is not None and info.audio.codec_name == "pcm_s16le", fmt
        assert await trio.to_thread.run_sync(audio_samples, path) == written, fmt
