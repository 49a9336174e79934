"""A session whose video jumps forward (a live playlist's segment skipped): what the recorder
writes and reports, with real packets and files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av

from collector.media.cutting import CutPlan
from collector.media.packets import MediaPacket, SessionInfo
from collector.media.pyav_source import HLS_MAX_JUMP_SECONDS, _max_jump
from collector.media.recorder import Progress, Recorder
from tests.media.clips import ClipInfo, make_clip, make_hls
from tests.media.probe import count_frames
from tests.test_recorder_pauses import clip_packets


def record(packets: list[MediaPacket], session: SessionInfo, folder: Path,
           duration: float) -> list[Progress]:
    recorder = Recorder(folder, "mp4", CutPlan(duration=duration, segment_seconds=2))
    got = [recorder.new_session(session)]
    for i in range(0, len(packets), 40):
        got.append(recorder.write(packets[i:i + 40]))
        if got[-1].done:
            break
    got.append(recorder.stop())
    return got


def without(packets: list[MediaPacket], start: float, end: float) -> list[MediaPacket]:
    """The clip with its media from `start` to `end` (seconds) missing: 2 s, a segment."""
    origin = packets[0].seconds
    return [p for p in packets if not start <= p.seconds - origin < end]


def later(packet: MediaPacket, seconds: int) -> MediaPacket:
    shift = round(seconds / packet.time_base)
    assert packet.pts is not None and packet.dts is not None
    return packet._replace(pts=packet.pts + shift, dts=packet.dts + shift)


def closed(got: list[Progress]) -> list[tuple[int, float, str]]:
    return [(s.frames, s.duration, s.reason) for p in got for s in p.segments]


def test_a_jump_over_the_limit_is_skipped_media(media_clip: ClipInfo, tmp_path: Path):
    """The clip's seconds 4 to 6 missing, 6 s to record in 2 s segments. With the playlist's
    limit (1.5 s) the segment before the jump closes as a discontinuity, the progress reports
    the 2 s skipped, and 6 s of video are written (150 frames); with the default (5 s) the
    jump counted as recorded: 4 s of video for 6 s."""
    session, packets = clip_packets(media_clip.path)
    holed = without(packets, 4.0, 6.0)

    strict = record(holed, dataclasses.replace(session, max_jump=1.5), tmp_path / "strict", 6)
    assert closed(strict) == [(50, 2.0, "boundary"), (50, 2.0, "discontinuity"),
                              (50, 2.0, "end")]
    assert [s for p in strict for s in p.skipped] == [2.0]
    assert [n for p in strict for n in p.steps] == [1, 2, 3]
    assert any(p.done for p in strict)

    lenient = record(holed, session, tmp_path / "lenient", 6)
    assert closed(lenient) == [(50, 2.0, "boundary"), (50, 2.0, "end")]  # 4 s for 6
    assert all(p.skipped == () for p in lenient)

    for path in sorted((tmp_path / "strict").iterdir()):
        assert count_frames(path) == 50


def test_a_jump_once_the_duration_is_recorded_finishes_it(media_clip: ClipInfo, tmp_path: Path):
    """The jump comes right after the 4 s asked for, before the frame at 4 s that would have
    finished the recording: the segment closes as its end, nothing is skipped, and no segment
    of one frame follows (one did, started at the next key frame and finished by the frame
    after it)."""
    session, packets = clip_packets(media_clip.path)
    holed = without(packets, 4.0, 6.0)
    got = record(holed, dataclasses.replace(session, max_jump=1.5), tmp_path, 4)
    assert closed(got) == [(50, 2.0, "boundary"), (50, 2.0, "end")]
    assert all(p.skipped == () for p in got)
    assert [n for p in got for n in p.steps] == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segment-00001.mp4",
                                                          "segment-00002.mp4"]


def test_only_a_session_with_its_own_limit_reports_skipped_media(media_clip: ClipInfo,
                                                                  tmp_path: Path):
    """A jump past the default limit (5 s: a camera, a file) restarts without a gap, as it
    always did; so does one of over a minute in a playlist (a clock that changed: an encoder
    restarted, a discontinuity), which is not taken for that much media skipped."""
    session, packets = clip_packets(media_clip.path)
    origin = packets[0].seconds
    holed = [p if p.seconds - origin < 4.0 else later(p, 90) for p in packets]
    for max_jump in (None, 1.5):
        got = record(holed, dataclasses.replace(session, max_jump=max_jump),
                     tmp_path / str(max_jump), 6)
        assert closed(got) == [(50, 2.0, "boundary"), (50, 2.0, "discontinuity"),
                               (50, 2.0, "end")], max_jump
        assert all(p.skipped == () for p in got)


def test_a_playlist_gets_its_limit_unless_its_video_is_slow(media_hls: Path, tmp_path: Path):
    """FFmpeg's HLS demuxer, 25 fps: 1.5 s. At 1 fps its frames are a second apart and may be
    more: the default limit."""
    with av.open(str(media_hls)) as container:
        assert container.format.name == "hls"
        assert _max_jump(container, container.streams.video[0].index) == HLS_MAX_JUMP_SECONDS
    slow = make_clip(tmp_path / "slow.mkv", seconds=6, fps=1, gop_seconds=2)
    with av.open(str(make_hls(slow.path, tmp_path / "slow"))) as container:
        assert container.format.name == "hls"
        assert _max_jump(container, container.streams.video[0].index) is None
