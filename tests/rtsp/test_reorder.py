"""Decoding times for reordered video (B-frames): derived from the SPS's reorder depth, no
network, no clock. RTP timestamps are presentation times; a muxer needs decoding times that never
decrease and never pass them."""

from __future__ import annotations

import base64
from itertools import pairwise

from collector.media.packets import MediaPacket
from collector.rtsp.h264 import SpsInfo, default_reorder, parse_sps
from collector.rtsp.h265 import parse_sps as parse_h265_sps
from collector.rtsp.sdp import Media
from collector.rtsp.tracks import Track
from tests.rtsp.packets import PPS, SPS, h264_frame, rtp, slice_nal

FRAME = 3600  # 25 fps at 90 kHz
# x264 Main/High 320x240 25 fps SPS and PPS: `-bf 2` (B-pyramid, VUI max_num_reorder_frames 2),
# and `-bf 2 -x264-params b-pyramid=none` (reorder 1)
SPS_REORDER_2 = bytes.fromhex("6764000dacd94141fb011000000300100000030320f1429960")
SPS_REORDER_1 = bytes.fromhex("6764000dacd10141fb011000000300100000030320f1429120")
PPS_B = bytes.fromhex("68ebe3cb22c0")
# x265 320x240 `bframes=2`: sps_max_num_reorder_pics 2
HEVC_SPS_REORDER_2 = bytes.fromhex(
    "42010101600000030090000003000003003ca00a080f16595924932bc05a020000030002000003003210")
HEVC_VPS = bytes.fromhex("40010c01ffff016000000300900000030000030078959409")
HEVC_PPS = bytes.fromhex("4401c172b46240")


def pyramid_gop(first: int) -> list[tuple[int, bool]]:
    """13 frames (display numbers from `first`) in decoding order, as x264 codes 3 B-frames with
    a pyramid: I0 P4 B2 b1 b3 P8 B6 b5 b7 P12 B10 b9 b11. (display number, key frame)"""
    order = [(first, True)]
    for anchor in (4, 8, 12):
        order += [(first + n, False) for n in (anchor, anchor - 2, anchor - 3, anchor - 1)]
    return order


def plain_gop(first: int) -> list[tuple[int, bool]]:
    """10 frames with 2 B-frames between anchors, no pyramid: I0 P3 B1 B2 P6 B4 B5 P9 B7 B8."""
    order = [(first, True)]
    for anchor in (3, 6, 9):
        order += [(first + anchor, False), (first + anchor - 2, False),
                  (first + anchor - 1, False)]
    return order


def track_for(sps: bytes, pps: bytes = PPS) -> Track:
    sprop = f"{base64.b64encode(sps).decode()},{base64.b64encode(pps).decode()}"
    media = Media(kind="video", payload_type=96, encoding="H264", clock_rate=90000,
                  fmtp={"sprop-parameter-sets": sprop})
    return Track.create(0, media, "rtsp://cam/track0")


def record(track: Track, frames: list[tuple[int, bool]], start: int = 1000) -> list[MediaPacket]:
    """Push the frames as RTP (timestamp = display number * FRAME + start); flush at the end."""
    out: list[MediaPacket] = []
    seq = 0
    for number, key in frames:
        nal = slice_nal(5 if key else 1, 300, number % 256)
        for pkt in h264_frame([nal], seq, start + number * FRAME):
            seq += 1
            track.push_rtp(rtp(pkt.sequence, pkt.timestamp, pkt.payload, marker=pkt.marker), out)
    track.flush(out)
    return out


def test_reorder_depth_from_the_sps_or_a_bound_by_profile():
    """max_num_reorder_frames from the VUI (x264 writes it); without a bitstream restriction,
    0 for Baseline and intra-only streams, else the DPB size of the level, at most 16."""
    assert parse_sps(SPS_REORDER_2) == SpsInfo(320, 240, 25.0, 2)
    assert parse_sps(SPS_REORDER_1).reorder == 1
    assert parse_sps(SPS).reorder == 0  # x264 -bf 0
    assert parse_h265_sps(HEVC_SPS_REORDER_2) == SpsInfo(320, 240, None, 2)
    main, high, baseline = 77, 100, 66
    assert default_reorder(baseline, 0xC0, 30, 1, 300) == 0
    assert default_reorder(main, 0x80, 30, 1, 300) == 0  # constraint_set0: keeps to Baseline
    assert default_reorder(high, 0x10, 40, 1, 8160) == 0  # High 10 Intra (constraint_set3)
    assert default_reorder(main, 0, 30, 0, 300) == 0  # no reference frames: intra only
    assert default_reorder(main, 0, 40, 4, 8160) == 4  # 1080p at level 4: 32768 // 8160
    assert default_reorder(main, 0, 30, 4, 300) == 16  # small pictures: capped
    assert default_reorder(main, 0, 99, 4, 300) == 16  # a level we do not know


def test_b_pyramid_gets_decoding_times_two_frames_behind():
    """Reorder depth 2 (x264 B-pyramid): the i-th frame in decoding order decodes at the i-th
    presentation time less two frames, so every frame decodes at or before it is shown, each
    one frame after the one before; presentation times are the RTP times, untouched."""
    frames = pyramid_gop(0) + pyramid_gop(13) + pyramid_gop(26)
    out = record(track_for(SPS_REORDER_2, PPS_B), frames)
    assert [p.pts for p in out] == [n * FRAME for n, _ in frames]
    assert [p.dts for p in out] == [(i - 2) * FRAME for i in range(len(frames))]
    assert {p.duration for p in out} == {FRAME}
    assert [p.keyframe for p in out] == [key for _, key in frames]


def test_b_frames_without_pyramid_decode_one_frame_behind():
    """Reorder depth 1: decoding times one frame behind, and each B-frame decodes exactly when
    it is shown (the tightest times that are still correct)."""
    frames = plain_gop(0) + plain_gop(10)
    out = record(track_for(SPS_REORDER_1, PPS_B), frames)
    assert [p.dts for p in out] == [(i - 1) * FRAME for i in range(len(frames))]
    assert [p.pts == p.dts for p in out][:4] == [False, False, True, True]


def test_without_reordering_decoding_time_is_presentation_time():
    """An SPS that reorders nothing (x264 -bf 0, the clip the ffmpeg fidelity test records)
    keeps DTS = PTS exactly, and durations from the RTP time steps as before."""
    frames = [(n, n % 10 == 0) for n in range(20)]
    out = record(track_for(SPS), frames)
    assert [(p.pts, p.dts, p.duration) for p in out] == [(n * FRAME, n * FRAME, FRAME)
                                                         for n in range(20)]


def test_joining_mid_gop_is_consistent_from_the_first_key_frame():
    """Joined in the middle of a GOP (no SDP parameter sets needed: they are in the SDP here),
    the first frames may get decoding times after their presentation (they cannot be recorded:
    recording starts at a key frame); from the first key frame on, decoding times rise by one
    frame each and never pass presentation times."""
    frames = (pyramid_gop(0) + pyramid_gop(13) + pyramid_gop(26))[3:]
    out = record(track_for(SPS_REORDER_2, PPS_B), frames)
    first_key = next(i for i, p in enumerate(out) if p.keyframe)
    recorded = out[first_key:]
    assert first_key == 10
    assert all(b.dts - a.dts == FRAME for a, b in pairwise(recorded))  # type: ignore[operator]
    assert all(p.dts <= p.pts for p in recorded)  # type: ignore[operator]


def test_h265_b_frames_without_a_rate_in_the_sdp_are_described_at_their_own():
    """An H.265 camera at 30 fps with a B-pyramid (reorder depth 2) and no `a=framerate`: the
    H.265 SPS gives no rate, so the track measures it, and describes the stream at 30 fps
    whichever unit it is asked after, not at the 25 fps that the decoding times made up before
    the first unit are spaced by (the muxers write the described rate: Matroska's
    DefaultDuration, which FFmpeg reads back as the stream's frame rate)."""
    def sprop(nal: bytes) -> str:
        return base64.b64encode(nal).decode()

    media = Media(kind="video", payload_type=96, encoding="H265", clock_rate=90000,
                  fmtp={"sprop-vps": sprop(HEVC_VPS), "sprop-sps": sprop(HEVC_SPS_REORDER_2),
                        "sprop-pps": sprop(HEVC_PPS)})
    track = Track.create(0, media, "rtsp://cam/track0")
    out: list[MediaPacket] = []
    described = []
    for seq, (number, key) in enumerate(pyramid_gop(0) + pyramid_gop(13)):
        nal = bytes([(19 if key else 1) << 1, 1, 0x80]) + bytes(100)  # IDR_W_RADL, TRAIL_R
        track.push_rtp(rtp(seq, 1000 + number * 3000, nal, marker=True), out)
        if track.ready():
            described.append(track.info().template.codec_context.framerate)
    assert described and set(described) == {30}
    assert all(p.dts <= p.pts for p in out)  # type: ignore[operator]
