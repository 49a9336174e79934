"""The RTSP client against the real GStreamer server with H.265 (h265parse ! rtph265pay) and
B-frames, whose decoding times the client makes up from the SPS's sps_max_num_reorder_pics
(collector/rtsp/tracks.py): recorded as a job records it into every format, each file checked
with ffprobe/ffmpeg; and its pictures byte for byte the encoder's and `ffmpeg -c copy`'s."""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
import trio

from tests.media.access_units import access_units
from tests.media.clips import ClipInfo, make_clip
from tests.media.probe import count_frames, decode_errors, packets
from tests.rtsp.test_real_server import (
    record_beside_ffmpeg,
    record_served,
    write_file,
)
from tests.rtsp.test_real_streams import FORMATS, Recorders

FPS, FRAME = 25, 3600  # 90 kHz ticks a frame
GOP = FPS  # frames: a key frame every second
SEGMENT = 2  # GOPs a segment
REORDER = 2  # x265's sps_max_num_reorder_pics with a B-pyramid


@pytest.fixture(scope="module")
def hevc_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipInfo:
    """4 s of 320x240 25 fps H.265 (x265: 3 B-frames with a B-pyramid, reordered two deep;
    closed GOPs of 1 s) in MPEG-TS, whose 90 kHz timestamps reach RTP exact.

    No audio: this server's RTP-Info for an MPEG-TS clip puts its audio 0.7 s before its video
    until RTCP sender reports line them up (test_real_server), so an MP4 segment cut before that
    starts with audio stamped before its first picture, and FFmpeg's fragmented MP4, which has
    no edit list, moves that picture back to the audio's start (keeping A/V sync). That is the
    server's and the MP4 muxer's doing, not what these tests are about; AAC is tested with H.264.
    """
    return make_clip(tmp_path_factory.mktemp("hevc") / "clip.ts", seconds=4, gop_seconds=1,
                     bframes=3, audio=False, container="ts", codec="h265")


def ticks(seconds: float | None) -> int:
    assert seconds is not None
    return round(seconds * 90000)


async def test_h265_b_frames_recorded_into_every_format(hevc_clip: ClipInfo, tmp_path: Path):
    """Every frame of the clip arrives once, in the encoder's decoding order with its
    presentation times and its key frames; decoding times are the presentation times in order,
    two frames earlier (the SPS's reorder depth). Recorded as a job does, in 2 s segments, MP4,
    Matroska and MPEG-TS segments each start with a key frame and hold the clip's key frames
    where the clip has them, 1/25 s apart in presentation order, with rising DTS and PTS >= DTS
    for every packet (MP4, MPEG-TS: Matroska stores no DTS), every frame decoding without an
    error: all 100 frames of the clip in each format."""
    clip = await trio.to_thread.run_sync(packets, hevc_clip.path)
    clip_keys = [i for i, p in enumerate(clip) if p.flags_keyframe]
    assert clip_keys == list(range(0, hevc_clip.frames, GOP))
    assert any(p.pts_time != p.dts_time for p in clip)  # reordered: the test means something
    sink = await record_served(hevc_clip.path)
    (video,) = sink.streams
    assert (video.kind, video.codec, video.width, video.height) == ("video", "hevc", 320, 240)
    frames = sink.packets_
    assert len(frames) == len(clip) == hevc_clip.frames
    pts = [p.pts or 0 for p in frames]
    assert [t - pts[0] for t in pts] == [ticks(p.pts_time) - ticks(clip[0].pts_time)
                                         for p in clip]
    assert [i for i, p in enumerate(frames) if p.keyframe] == clip_keys
    shown = sorted(pts)
    assert {b - a for a, b in pairwise(shown)} == {FRAME}
    assert [p.dts for p in frames] == [t - REORDER * FRAME for t in shown]
    recorders = Recorders(tmp_path, segment_seconds=SEGMENT * GOP / FPS)
    recorders.opened(sink.streams)
    await trio.to_thread.run_sync(recorders.packets, sink.packets_)
    recorders.stop()
    assert set(recorders.results) == set(FORMATS)
    each = SEGMENT * GOP  # frames a segment
    cuts = hevc_clip.frames // each
    for fmt, segments in recorders.results.items():
        assert [s.reason for s in segments] == ["boundary"] * (cuts - 1) + ["end"], fmt
        assert [(s.frames, s.keyframes, s.codec) for s in segments] == [
            (each, SEGMENT, "hevc")] * cuts, fmt
        for segment in segments:
            where = (fmt, segment.path.name)
            muxed = await trio.to_thread.run_sync(packets, segment.path)
            assert len(muxed) == each, where
            keys = [i for i, p in enumerate(muxed) if p.flags_keyframe]
            assert keys == clip_keys[:SEGMENT], where
            shown_s = sorted(ticks(p.pts_time) for p in muxed)
            assert {b - a for a, b in pairwise(shown_s)} == {FRAME}, where
            if fmt != "mkv":  # Matroska stores no decoding times (FFmpeg makes some up)
                dts = [ticks(p.dts_time) for p in muxed]
                assert all(b > a for a, b in pairwise(dts)), where
                assert all(ticks(p.pts_time) >= t for p, t in zip(muxed, dts, strict=True)), where
            assert await trio.to_thread.run_sync(count_frames, segment.path) == each, where
            assert await trio.to_thread.run_sync(decode_errors, segment.path) == "", where


async def test_h265_same_pictures_as_the_clip_and_ffmpeg_copy(hevc_clip: ClipInfo,
                                                              tmp_path: Path):
    """Fidelity oracle: our client and `ffmpeg -rtsp_transport tcp -c copy` record the same server
    path at the same time. Every picture's slices are the bytes x265 wrote into the clip and the
    bytes FFmpeg recorded, in the same decoding order, key frames at the same pictures; the
    parameter sets are the same ones (SEI, AUDs and parameter sets are left out of the slices:
    each side repeats them in its own way). Our presentation times are the clip's exactly, from
    the first picture on; FFmpeg's, from its second GOP on, within 1 ms of ours (it re-bases its
    clock on RTCP sender reports, by a tick or two; and it has no decoding times for the first
    frames of a reordered stream: its muxer warns "Invalid DTS" and "Non-monotonous DTS" and
    moves the first B-frames, so its first GOP is not compared)."""
    ours, theirs = tmp_path / "ours.mp4", tmp_path / "ffmpeg.mp4"
    sink = await record_beside_ffmpeg(hevc_clip.path, theirs)
    assert await trio.to_thread.run_sync(write_file, ours, sink) == hevc_clip.frames
    clip_u = await trio.to_thread.run_sync(access_units, hevc_clip.path)
    mine_u = await trio.to_thread.run_sync(access_units, ours)
    ref_u = await trio.to_thread.run_sync(access_units, theirs)
    assert len(clip_u) == len(mine_u) == len(ref_u) == hevc_clip.frames
    assert {u.codec for u in (*clip_u, *mine_u, *ref_u)} == {"hevc"}
    assert [u.keyframe for u in mine_u] == [u.keyframe for u in clip_u] == [
        u.keyframe for u in ref_u]
    assert [u.slices for u in mine_u] == [u.slices for u in clip_u]
    assert [u.slices for u in mine_u] == [u.slices for u in ref_u]
    assert {ps for u in mine_u for ps in u.parameter_sets} == {
        ps for u in clip_u for ps in u.parameter_sets} == {
        ps for u in ref_u for ps in u.parameter_sets}
    assert [u.seconds - mine_u[0].seconds for u in mine_u] == [
        u.seconds - clip_u[0].seconds for u in clip_u]
    mine_t = [u.seconds - mine_u[GOP].seconds for u in mine_u[GOP:]]
    ref_t = [u.seconds - ref_u[GOP].seconds for u in ref_u[GOP:]]
    off = [GOP + i for i, (a, b) in enumerate(zip(mine_t, ref_t, strict=True))
           if abs(a - b) > Fraction(1, 1000)]
    assert not off, f"picture {off[0]} is shown at another time in FFmpeg's file"
