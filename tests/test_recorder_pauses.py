"""A recorder that pauses before every segment change (as jobs in the event loop use it) writes
what one that does not pause writes: the same files, byte for byte, and the same progress."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from collector.media.cutting import CutPlan
from collector.media.packets import MediaPacket, SessionInfo
from collector.media.pyav_source import describe_streams, to_media_packet
from collector.media.recorder import Progress, Recorder
from tests.media.clips import ClipInfo
from tests.media.probe import count_frames


def clip_packets(clip: Path) -> tuple[SessionInfo, list[MediaPacket]]:
    with av.open(str(clip)) as container:
        chosen, infos = describe_streams(container)
        bases = {s.index: s.time_base for s in chosen}
        packets = [to_media_packet(p, bases[p.stream_index]) for p in container.demux(*chosen)
                   if p.dts is not None]
    return SessionInfo(session=1, streams=infos), packets


def segments(progress: list[Progress]) -> list[tuple]:
    """What every segment closed in `progress` says of itself (all but its time of day)."""
    return [(s.index, s.path.name, s.frames, s.keyframes, s.duration, s.bytes, s.reason,
             s.start_seconds) for p in progress for s in p.segments]


@pytest.mark.parametrize("batch_size", [1, 7, 40])
def test_pausing_before_segment_changes_writes_the_same(media_clip: ClipInfo, tmp_path: Path,
                                                       batch_size: int):
    session, packets = clip_packets(media_clip.path)
    # 2 s segments of a 2 s GOP clip, 9 s in all: a change every ~25 video frames, and the end;
    # a batch of 40 packets holds a cut at least now and then, a batch of 1 never two
    plain = Recorder(tmp_path / "plain", "mp4", CutPlan(duration=9, segment_seconds=2))
    paused = Recorder(tmp_path / "paused", "mp4", CutPlan(duration=9, segment_seconds=2))
    got_plain = [plain.new_session(session)]
    got_paused = [paused.new_session(session)]
    pauses = 0
    batches = [packets[i:i + batch_size] for i in range(0, len(packets), batch_size)]
    for batch in batches:
        got_plain.append(plain.write(batch))
        progress = paused.write(batch, pause=True)
        while progress.paused:  # what a job does, minus the lock: announce, then go on
            pauses += 1
            got_paused.append(progress)
            progress = paused.resume()
        got_paused.append(progress)
    got_plain.append(plain.stop())
    got_paused.append(paused.stop())
    assert segments(got_paused) == segments(got_plain)
    assert pauses == 6  # the first segment's start, four cuts, the end of the 9 s
    assert [s[6] for s in segments(got_plain)] == ["boundary"] * 4 + ["end"]
    steps = lambda got: [n for p in got for n in p.steps]  # noqa: E731
    assert steps(got_paused) == steps(got_plain) == [1, 2, 3, 4, 5]  # one per closed segment
    assert got_paused[-2].done and got_plain[-2].done
    for name in sorted(p.name for p in (tmp_path / "plain").iterdir()):
        assert (tmp_path / "paused" / name).read_bytes() == (tmp_path / "plain" / name).read_bytes()
        assert count_frames(tmp_path / "paused" / name) == (25 if name.endswith("5.mp4") else 50)


def test_a_paused_batch_is_dropped_on_stop(media_clip: ClipInfo, tmp_path: Path):
    """Stopped while paused before a cut (the job was cancelled waiting for its turn): the open
    segment is closed as stopped and the rest of the batch is not written."""
    session, packets = clip_packets(media_clip.path)
    recorder = Recorder(tmp_path, "mp4", CutPlan(duration=9, segment_seconds=2))
    recorder.new_session(session)
    progress = recorder.write(packets, pause=True)
    assert progress.paused and not progress.segments  # before the first segment's start
    progress = recorder.resume()
    assert progress.paused and not progress.segments  # before the cut at 2 s
    (segment,) = recorder.stop().segments
    assert (segment.reason, segment.frames, segment.duration) == ("stopped", 50, 2.0)
    assert count_frames(segment.path) == 50
    assert recorder.stop().segments == ()


def test_a_pending_cut_is_not_counted(media_clip: ClipInfo, tmp_path: Path):
    """Paused before a cut, the plan has already counted the step that cut completes; the
    progress counts only what its closed segments completed. (It said 2 steps here, and the job
    announced step 2 before segment 2 was closed, with segment 1.)"""
    session, packets = clip_packets(media_clip.path)
    recorder = Recorder(tmp_path, "mp4", CutPlan(duration=9, segment_seconds=2))
    recorder.new_session(session)
    assert recorder.write(packets, pause=True).paused  # before the first segment's start
    progress = recorder.resume()
    assert progress.paused and progress.segments == () and progress.steps == ()  # before 2 s
    progress = recorder.resume()  # the cut at 2 s: closes segment 1, pauses before 4 s
    assert progress.paused and [s.index for s in progress.segments] == [1]
    assert progress.steps == (1,)
    recorder.stop()
