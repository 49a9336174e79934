"""Where segments start and end: a pure decision per packet, no I/O (tested without files).

Positions are seconds of recorded video for one source of one job. Recording starts at a key frame
of the reference stream (first video stream); a segment is cut at the first key frame at or after
each `segment_seconds` boundary; the source is done at the first reference packet at or past
`duration`. A new session or a timestamp jump ends the current run: its segment is closed and the
next run starts at the next key frame, continuing the position where the last run ended (the job
collects `duration` seconds of video on disk; the gap itself is not counted). A forward jump is
one of more than `max_jump` seconds between reference packets: 5 s by default (a camera may send
nothing for a while, its frame rate varying), less for a source whose media has no pauses of its
own (SessionInfo.max_jump: a playlist FFmpeg's HLS demuxer reads, where a jump is a segment
skipped).

Steps: the source plans ceil(duration / segment_seconds) steps. A step is done when the segment
that crossed its boundary is closed; with a key frame interval longer than the segment length one
segment may finish several steps. A run cut short by an outage finishes those whose boundary its
video passed (`count_passed`), which may be none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum, auto

from collector.media.packets import MediaPacket

EPSILON = 1e-3  # seconds; timestamps converted from integer time bases are not exact floats
MAX_JUMP_SECONDS = 5.0  # a forward jump larger than this is a discontinuity, not a late frame
MAX_BACKWARD_SECONDS = 0.5
# A forward jump past a session's own `max_jump` is reported as media skipped (Recorder) up to
# this long; a longer one is taken for a clock that changed (an encoder restarted with a later
# clock, a playlist's discontinuity), as any jump over 5 s was: a new run, and no gap.
MAX_SKIPPED_SECONDS = 60.0
# Under a session's own `max_jump`, video frames up to this many times the last step between
# them apart are the source's own pace (a restream whose video slowed down after FFmpeg measured
# its rate), up to MAX_JUMP_SECONDS: only the first slow frame is taken for a jump.
PACE_FACTOR = 4.0


class Decision(Enum):
    SKIP = auto()  # not recorded (before the first key frame, or after the end)
    START = auto()  # open a segment, then write this packet
    CUT = auto()  # close the segment (a boundary), open the next, write this packet
    RESTART = auto()  # close the segment (discontinuity); re-decide this packet as a new run
    WRITE = auto()
    FINISH = auto()  # close the last segment; this packet is not recorded


def planned_steps(duration: float, segment_seconds: float) -> int:
    return max(1, math.ceil(duration / segment_seconds - EPSILON))


@dataclass(slots=True)
class CutPlan:
    duration: float
    segment_seconds: float
    reference: int = 0  # stream index that paces segments
    steps_done: int = 0
    recorded: float = 0.0  # seconds of video in runs already ended
    done: bool = False
    max_jump: float = MAX_JUMP_SECONDS  # for the current session (Recorder.new_session)
    # The media a forward jump that ended the last run skipped: seconds between the last frame's
    # end and the next frame, when the session has its own limit (a playlist) and it is at most
    # MAX_SKIPPED_SECONDS; else None. The Recorder reports it.
    jumped: float | None = None
    _origin: float | None = None  # reference time of the current run's first key frame
    _last: float = 0.0  # reference time of the last reference packet
    # The last forward step between reference frames (a jump's included), and the frames that
    # came behind it since (B-frames: a step in decode order spans them)
    _step: float = 0.0
    _behind: int = 0
    _reordered: bool = False  # a reference packet came before one it follows (B-frames)
    _last_end: float = 0.0  # position where the last reference frame ends
    # Per stream index, for the current run: seconds per tick (float(time_base): Fraction
    # arithmetic per packet cost more than the muxing) and the shift onto the recording's clock.
    _scale: dict[int, float] = field(default_factory=dict)
    _shift: dict[int, int] = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return planned_steps(self.duration, self.segment_seconds)

    @property
    def running(self) -> bool:
        return self._origin is not None

    def _seconds_per_tick(self, pkt: MediaPacket) -> float:
        scale = self._scale.get(pkt.stream)
        if scale is None:
            scale = self._scale[pkt.stream] = float(pkt.time_base)
        return scale

    def position(self, pkt: MediaPacket) -> float:
        assert self._origin is not None
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        return self.recorded + (ts or 0) * self._seconds_per_tick(pkt) - self._origin

    def out_timestamps(self, pkt: MediaPacket) -> tuple[int, int | None]:
        """The packet's timestamps on the recording's own clock (0 = first frame of the job)."""
        assert self._origin is not None
        shift = self._shift.get(pkt.stream)
        if shift is None:
            shift = self._shift[pkt.stream] = round((self.recorded - self._origin) / pkt.time_base)
        pts = pkt.pts if pkt.pts is not None else pkt.dts
        assert pts is not None
        return pts + shift, None if pkt.dts is None else pkt.dts + shift

    def place(self, pkt: MediaPacket) -> tuple[int, int | None] | None:
        """`out_timestamps(pkt)` when `decide(pkt)` would say WRITE, with the same effect; None,
        having changed nothing, for anything else (then call `decide`).

        Nearly every packet is simply written: one call for it instead of two, and none of the
        checks that only a packet opening or ending something needs.
        """
        origin, ts = self._origin, pkt.pts
        if origin is None or ts is None or self.done:
            return None
        stream = pkt.stream
        scale, shift = self._scale.get(stream), self._shift.get(stream)
        if scale is None or shift is None:
            return None
        t = ts * scale
        dts = pkt.dts
        if stream != self.reference:
            if t < origin - EPSILON:
                return None
            return ts + shift, None if dts is None else dts + shift
        last = self._last
        if t < last - MAX_BACKWARD_SECONDS or t > last + self.max_jump:
            return None
        pos = self.recorded + t - origin
        if pos >= self.duration - EPSILON or (
                pkt.keyframe and pos >= (self.steps_done + 1) * self.segment_seconds - EPSILON):
            return None
        if t > last:
            self._step, self._behind, self._last = t - last, 0, t
        elif t < last:
            self._reordered = True
            self._behind += 1
        end = pos + pkt.duration * scale
        if end > self._last_end:
            self._last_end = end
        return ts + shift, None if dts is None else dts + shift

    def decide(self, pkt: MediaPacket) -> Decision:
        ts = pkt.pts if pkt.pts is not None else pkt.dts
        if self.done or ts is None:
            return Decision.SKIP
        scale = self._scale.get(pkt.stream)
        if scale is None:
            scale = self._seconds_per_tick(pkt)
        t = ts * scale
        if pkt.stream != self.reference:
            if self._origin is None or t < self._origin - EPSILON:
                return Decision.SKIP
            return Decision.WRITE
        if self._origin is None:
            if not pkt.keyframe:
                return Decision.SKIP
            self._origin, self._last = t, t
            self._last_end = self.recorded + pkt.duration * scale
            self._shift.clear()
            return Decision.START
        last = self._last
        if t < last - MAX_BACKWARD_SECONDS or t > last + self._jump_limit():
            # (the media between the end of the last frame and this one)
            skipped = self.recorded + t - self._origin - self._last_end
            self.end_run()
            if (t > last and self.max_jump < MAX_JUMP_SECONDS
                    and EPSILON < skipped <= MAX_SKIPPED_SECONDS):
                self.jumped = skipped
            if t > last:
                self._step, self._behind = t - last, 0
            return Decision.RESTART
        pos = self.recorded + t - self._origin
        if pos >= self.duration - EPSILON:
            self.done, self.steps_done = True, self.steps
            return Decision.FINISH
        if t > last:
            self._step, self._behind, self._last = t - last, 0, t
        elif t < last:
            self._reordered = True
            self._behind += 1
        end = pos + pkt.duration * scale
        if end > self._last_end:
            self._last_end = end
        boundary = (self.steps_done + 1) * self.segment_seconds
        if pkt.keyframe and pos >= boundary - EPSILON:
            self.steps_done = min(self.steps - 1, math.floor(pos / self.segment_seconds + EPSILON))
            return Decision.CUT
        return Decision.WRITE

    def new_session(self, max_jump: float) -> None:
        """A session of the source begins (after `end_run`), with its own jump limit."""
        self.max_jump, self._step, self._behind = max_jump, 0.0, 0

    def _jump_limit(self) -> float:
        if self.max_jump >= MAX_JUMP_SECONDS:
            return self.max_jump
        pace = self._step / (self._behind + 1)  # per frame, the frames behind it included
        return min(MAX_JUMP_SECONDS, max(self.max_jump, PACE_FACTOR * pace))

    def finish_run(self) -> None:
        """The run is over (a file read to its end; a jump, before the next run starts): end
        it, and finish the recording, with every step done, if it holds the duration."""
        self.end_run()
        if not self.done and self.recorded >= self.duration - EPSILON:
            self.done, self.steps_done = True, self.steps

    def holds_duration(self) -> bool:
        """The video recorded, the current run's included, is the duration already: only the
        frame that would finish the recording has not come. Not once video was seen to come out
        of order (B-frames: the last frames before the duration may still be to come after the
        one ending it; before the first B-frame arrives, a duration within the first group of
        pictures, under ~0.2 s, can pass for held), nor before any video was recorded."""
        reached = self._reached()
        return not self._reordered and reached > 0 and reached >= self.duration - EPSILON

    def count_passed(self) -> None:
        """A run cut short by an outage (its segment closes as a discontinuity, at no key frame):
        the steps whose boundary its video passed are done, as a cut there would have counted
        them, rather than only at the next segment's close. The last step waits for the finish."""
        passed = math.floor((self._reached() + EPSILON) / self.segment_seconds)
        self.steps_done = max(self.steps_done, min(self.steps - 1, passed))

    def _reached(self) -> float:
        """The position the video recorded reaches, the current run's included."""
        return self._last_end if self._origin is not None else self.recorded

    def end_run(self) -> None:
        """The session ended or jumped: the next packet must start a new run at a key frame."""
        if self._origin is not None:
            self.recorded = self._last_end
        self._origin = None
        self.jumped = None
        self._scale.clear()  # the next run may come from a new session with other time bases
