"""The cut plan: where segments start and end, and how steps are counted (pure, no files)."""

from __future__ import annotations

import random
from fractions import Fraction

from collector.media.cutting import CutPlan, Decision, planned_steps
from collector.media.packets import MediaPacket

TB = Fraction(1, 90_000)


def video(t: float, key: bool = False) -> MediaPacket:
    ts = round(t / TB)
    return MediaPacket(
        stream=0, data=b"", pts=ts, dts=ts, duration=3600, keyframe=key, time_base=TB
    )


def audio(t: float) -> MediaPacket:
    ts = round(t / TB)
    return MediaPacket(
        stream=1, data=b"", pts=ts, dts=ts, duration=1920, keyframe=True, time_base=TB
    )


def run(plan: CutPlan, packets: list[MediaPacket]) -> list[tuple[float, Decision, int]]:
    return [
        (p.seconds, d, plan.steps_done)
        for p in packets
        if (d := plan.decide(p)) is not Decision.WRITE
    ]


def test_planned_steps_round_up():
    assert planned_steps(10, 2) == 5
    assert planned_steps(10, 3) == 4
    assert planned_steps(1, 5) == 1
    assert planned_steps(10.0000001, 2) == 5  # float noise does not add a step


def test_starts_at_key_frame_and_cuts_at_boundaries():
    """Frames before the first key frame are skipped; cuts land on key frames at/after 2 s."""
    plan = CutPlan(duration=6, segment_seconds=2)
    packets = [video(100 + i * 0.04, key=(i % 50 == 0 and i > 0)) for i in range(1, 400)]
    events = run(plan, packets)
    skipped = [t for t, d, _ in events if d is Decision.SKIP]
    assert len([t for t in skipped if t < 102]) == 49  # everything before the key frame at 102.0
    assert min(t for t in skipped if t > 102) >= 108  # ...and everything from the end on
    assert [(round(t, 2), d, s) for t, d, s in events if d is not Decision.SKIP][:4] == [
        (102.0, Decision.START, 0),
        (104.0, Decision.CUT, 1),
        (106.0, Decision.CUT, 2),
        (108.0, Decision.FINISH, 3),
    ]
    assert plan.done and plan.steps_done == plan.steps == 3


def test_long_gop_finishes_several_steps_in_one_segment():
    """Key frames every 4 s with 1 s segments: each cut completes the steps it crossed."""
    plan = CutPlan(duration=8, segment_seconds=1)
    events = run(plan, [video(i * 0.5, key=(i % 8 == 0)) for i in range(0, 40)])
    assert [(t, d, s) for t, d, s in events if d is not Decision.SKIP] == [
        (0.0, Decision.START, 0),
        (4.0, Decision.CUT, 4),
        (8.0, Decision.FINISH, 8),
    ]


def test_audio_before_start_is_skipped_and_output_starts_at_zero():
    plan = CutPlan(duration=4, segment_seconds=2)
    assert plan.decide(audio(9.9)) is Decision.SKIP
    assert plan.decide(video(10.0, key=True)) is Decision.START
    assert plan.out_timestamps(video(10.0, key=True)) == (0, 0)
    assert plan.decide(audio(9.99)) is Decision.SKIP  # older than the first video frame
    assert plan.decide(audio(10.02)) is Decision.WRITE
    assert plan.out_timestamps(audio(10.02)) == (1800, 1800)


def test_timestamp_jump_restarts_and_continues_position():
    """A forward jump of more than 5 s ends the run; the next run continues the position, so the
    gap does not count as recorded video."""
    plan = CutPlan(duration=6, segment_seconds=2)
    assert plan.decide(video(0, key=True)) is Decision.START
    for i in range(1, 25):
        assert plan.decide(video(i * 0.04)) is Decision.WRITE
    assert plan.decide(video(50.0, key=True)) is Decision.RESTART
    assert plan.decide(video(50.0, key=True)) is Decision.START
    assert plan.recorded == 1.0  # 25 frames of 40 ms before the jump
    assert plan.out_timestamps(video(50.0, key=True))[0] == 90_000  # continues at 1.0 s
    assert plan.decide(video(51.0, key=True)) is Decision.CUT  # position 2.0 s


def test_a_shorter_jump_limit_takes_a_skipped_segment_for_a_gap():
    """A live playlist's 2 s segment skipped: the video jumps 2 s. Within the default limit
    (5 s) that passes as recorded video; with a session's `max_jump` of 1.5 s it ends the run,
    the plan says how much media is missing (from the last frame's end), and the position goes
    on from the last frame: the gap is not counted."""
    frames = [video(i * 0.04, key=i == 0) for i in range(25)]  # 1 s, the last ends at 1.0
    after = video(3.0, key=True)

    lenient = CutPlan(duration=6, segment_seconds=2)
    assert [lenient.decide(p) for p in frames] == [Decision.START] + [Decision.WRITE] * 24
    assert lenient.decide(after) is Decision.CUT  # position 3.0 s: two seconds of nothing
    assert lenient.jumped is None

    plan = CutPlan(duration=6, segment_seconds=2)
    plan.new_session(1.5)
    assert [plan.decide(p) for p in frames] == [Decision.START] + [Decision.WRITE] * 24
    assert plan.place(after) is None
    assert plan.decide(after) is Decision.RESTART
    assert plan.jumped is not None and abs(plan.jumped - 2.0) < 1e-9  # from 1.0 to 3.0
    assert abs(plan.recorded - 1.0) < 1e-9
    assert plan.decide(after) is Decision.START
    assert plan.out_timestamps(after)[0] == 90_000
    assert plan.jumped is not None  # kept until the run ends
    plan.end_run()
    assert plan.jumped is None
    plan.decide(video(10.0, key=True))
    assert plan.decide(video(9.0)) is Decision.RESTART  # backward: nothing is missing
    assert plan.jumped is None


def test_video_that_slows_down_is_taken_for_a_jump_once():
    """A playlist whose video goes from 25 fps to a frame every 2 s (a restream of a camera
    that slows down when nothing moves; FFmpeg measured 25 fps): the first slow frame is a
    jump, the next ones, no more than 4 times the last step apart, are the video's own pace.
    (Each slow frame restarted the recording: frames lost, and the job never ended.)"""
    plan = CutPlan(duration=60, segment_seconds=10)
    plan.new_session(1.5)
    fast = [video(i * 0.04, key=i == 0) for i in range(25)]
    slow = [video(1.0 + 2 * i, key=True) for i in range(1, 6)]
    assert [plan.decide(p) for p in fast] == [Decision.START] + [Decision.WRITE] * 24
    assert plan.decide(slow[0]) is Decision.RESTART
    assert plan.decide(slow[0]) is Decision.START
    assert [plan.place(p) is not None for p in slow[1:]] == [False] * 4  # beyond 1.5 s...
    assert [plan.decide(p) for p in slow[1:]] == [Decision.WRITE] * 4  # ...within its pace
    assert plan.decide(video(11.0 + 5.5, key=True)) is Decision.RESTART  # over 5 s: a jump
    plan.new_session(1.5)  # a new session forgets the pace
    plan.decide(video(20.0, key=True))
    assert plan.decide(video(22.0)) is Decision.RESTART


def test_the_pace_is_per_frame_with_b_frames():
    """5 fps with 2 B-frames: in decode order the P-frames are 0.6 s apart, but the video's
    pace is 0.2 s a frame, so a skipped 2 s segment (2.2 s from the last P) is a jump. (Taken
    per step, the limit was 4 x 0.6 s: the 2 s passed as recorded.)"""
    def frame(t: float, key: bool = False) -> MediaPacket:
        return video(t, key)._replace(duration=18_000)  # 0.2 s

    plan = CutPlan(duration=20, segment_seconds=10)
    plan.new_session(1.5)
    order = [0.0, 0.6, 0.2, 0.4, 1.2, 0.8, 1.0, 1.8, 1.4, 1.6]  # I P B B P B B P B B
    assert [plan.decide(frame(t, t == 0)) for t in order] == (
        [Decision.START] + [Decision.WRITE] * 9)
    assert plan.decide(frame(4.0, True)) is Decision.RESTART
    assert plan.jumped is not None and abs(plan.jumped - 2.0) < 1e-9


def test_holds_duration_once_the_last_frame_needed_is_in():
    """4 s asked for: the frame at 3.96 s ends at 4.0, so the recording holds the duration,
    though only the frame at 4.0 s would finish it; also once the run is over."""
    plan = CutPlan(duration=4, segment_seconds=2)
    assert not plan.holds_duration()
    for i in range(99):
        plan.decide(video(i * 0.04, key=i % 50 == 0))
        assert not plan.holds_duration()
    plan.decide(video(99 * 0.04))
    assert plan.holds_duration() and not plan.done
    plan.end_run()
    assert plan.holds_duration()


def test_holds_duration_never_with_b_frames_nor_before_any_video():
    """With B-frames the frame ending at the duration comes before the B-frames before it
    (decode order): whether those are all in is unknown, so never. A duration under a
    millisecond is 'held' by nothing at all: never before a frame."""
    plan = CutPlan(duration=0.001, segment_seconds=1)
    assert not plan.holds_duration()
    for order, held in (((0.0, 0.04, 0.08, 0.12), True), ((0.0, 0.12, 0.04, 0.08), False)):
        plan = CutPlan(duration=0.16, segment_seconds=1)
        for t in order:  # I P P P; then I P B B, whose P ends at 0.16 before the Bs come
            plan.decide(video(t, key=t == 0))
        assert plan.holds_duration() is held, order


def test_new_session_needs_a_key_frame():
    plan = CutPlan(duration=6, segment_seconds=2)
    plan.decide(video(0, key=True))
    plan.decide(video(0.04))
    plan.end_run()
    assert plan.decide(video(0.0)) is Decision.SKIP
    assert plan.decide(video(0.04, key=True)) is Decision.START


def test_place_is_decide_and_out_timestamps_for_written_packets():
    """`place` (the recorder's per-packet shortcut) gives the timestamps of every packet `decide`
    would write, and for any other packet None without changing the plan: a stream with key
    frames, audio before and after the first video, a backward step, a jump, late audio and the
    end, planned both ways, decides and times every packet alike."""
    rng = random.Random(7)
    packets, t = [], 50.0
    for i in range(1500):
        t += rng.choice([0.04] * 30 + [-0.3, -0.8, 6.0, 0.0])
        packets.append(video(t, key=i % 37 == 0 or rng.random() < 0.02))
        packets += [audio(t + rng.uniform(-0.6, 0.1)) for _ in range(rng.randint(0, 3))]
    packets.append(MediaPacket(stream=1, data=b"", pts=None, dts=5, duration=1, keyframe=True,
                               time_base=TB))

    def outcomes(use_place: bool) -> list[tuple[Decision, tuple[int, int | None] | None]]:
        plan, out = CutPlan(duration=20, segment_seconds=4), []
        for p in packets:
            placed = plan.place(p) if use_place else None
            if placed is not None:
                out.append((Decision.WRITE, placed))
                continue
            d = plan.decide(p)
            writes = d in (Decision.WRITE, Decision.START, Decision.CUT)
            out.append((d, plan.out_timestamps(p) if writes else None))
        return out

    plain, placed = outcomes(False), outcomes(True)
    assert plain == placed
    decisions = {d for d, _ in plain}
    assert {Decision.START, Decision.CUT, Decision.RESTART, Decision.SKIP, Decision.WRITE,
            Decision.FINISH} <= decisions
    assert sum(d is Decision.WRITE for d, _ in plain) > 1000


def test_an_outage_after_a_boundary_counts_its_step():
    """Key frames every 2.2 s, 2 s segments: the session ends at 4.3 s, past the 4 s boundary
    but before the key frame that would have cut there. The segment closing at the outage holds
    video past 4 s: its close counts step 2 (not the next segment's). Before a boundary nothing
    more counts, and the last step waits for the finish."""
    plan = CutPlan(duration=6, segment_seconds=2)
    packets = [video(i * 0.1, key=(i % 22 == 0)) for i in range(0, 43)]  # up to 4.2 s
    assert [(round(t, 1), d, s) for t, d, s in run(plan, packets)] == [
        (0.0, Decision.START, 0),
        (2.2, Decision.CUT, 1),
    ]
    plan.count_passed()
    assert plan.steps_done == 2  # the last frame ends at 4.24 s
    plan.end_run()
    plan.count_passed()
    assert plan.steps_done == 2
    later = CutPlan(duration=6, segment_seconds=2)
    run(later, [video(i * 0.1, key=(i % 22 == 0)) for i in range(0, 39)])  # up to 3.8 s
    later.count_passed()
    assert later.steps_done == 1
    short = CutPlan(duration=4, segment_seconds=2)
    run(short, [*(video(i * 0.1, key=(i % 22 == 0)) for i in range(0, 39)), video(3.96)])
    short.count_passed()  # the last frame ends at 4.0 s, the duration
    assert short.steps_done == 1  # step 2 of 2 is the finish's
