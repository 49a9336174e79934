"""One source of one job: applies the cut plan's decisions to segment files.

The job actor calls it in the trio thread, one batch at a time: muxing a batch is a few hundred
microseconds of work that only hands bytes to the kernel's page cache, and a thread hop per batch
per source cost more CPU than the muxing itself (GIL hand-offs: measured ~5 ms of CPU per camera
second at 30 cameras). What can wait on the disk, the fsync of closed segments, is not done here:
the job runs `segments.make_durable` in a worker thread before it announces their steps.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from collector.errors import SegmentError
from collector.media.cutting import MAX_JUMP_SECONDS, CutPlan, Decision
from collector.media.packets import MediaPacket, SessionInfo
from collector.media.segments import (
    FAST_IO_BUFFER_BYTES,
    FORMATS,
    IO_BUFFER_BYTES,
    SegmentResult,
    SegmentWriter,
)

_WRITE = Decision.WRITE
# A segment of at least FAST_MIN_SECONDS of video written FAST_FACTOR times faster than real time
# says the source is a file read at full speed (segments.FAST_IO_BUFFER_BYTES).
FAST_MIN_SECONDS, FAST_FACTOR = 1.0, 4.0
Closed = tuple[SegmentResult, int]  # a closed segment, and the steps done once it was closed


@dataclass(frozen=True, slots=True)
class Progress:
    segments: tuple[SegmentResult, ...]  # closed, in order
    # Per closed segment, the source's steps done once it is closed: the step of a segment whose
    # change is still pending (`paused`) is not counted, though the plan has decided it.
    steps: tuple[int, ...]
    done: bool
    paused: bool = False  # stopped before opening or closing a segment file: `resume()` goes on
    # Seconds of media the source skipped within a session, one entry per jump, in order
    # (CutPlan.jumped)
    skipped: tuple[float, ...] = ()


class Recorder:
    def __init__(self, folder: Path, fmt: str, plan: CutPlan) -> None:
        self.folder, self.fmt, self.plan = folder, fmt, plan
        self.io_buffer_bytes = IO_BUFFER_BYTES  # the next segment file's (segments.py)
        self._session: SessionInfo | None = None
        self._writer: SegmentWriter | None = None
        self._count = 0
        # Where `write(pause=True)` stopped: the rest of the batch, the packet it stopped before,
        # and what the plan decided for that packet
        self._pending: tuple[Iterator[MediaPacket], MediaPacket, Decision] | None = None
        self._skipped: list[float] = []  # jumps not yet reported in a Progress

    def new_session(self, session: SessionInfo) -> Progress:
        """A (re)connected session: whatever was open belongs to the old one and is closed."""
        closed = self._close("discontinuity")
        self.plan.end_run()
        self._session = session
        self.plan.reference = session.reference().index
        self.plan.new_session(session.max_jump or MAX_JUMP_SECONDS)
        return self._progress(closed)

    def write(self, batch: Sequence[MediaPacket], *, pause: bool = False) -> Progress:
        """Mux `batch`, opening and closing segment files where the plan says.

        With `pause`, it stops before a packet that opens or closes a segment file (~1-2 ms of
        work, against ~10 us for a packet) and says so (`Progress.paused`); `resume()` carries
        out that decision and goes on, stopping again before the next one. A caller in the event
        loop lets other work run in between (see actors/job.py).
        """
        self._pending = None
        return self._write(iter(batch), pause, [])

    def resume(self) -> Progress:
        """Go on where `write(pause=True)` stopped, pausing again before the next segment change."""
        assert self._pending is not None
        rest, pkt, decision = self._pending
        self._pending = None
        closed: list[Closed] = []
        if self._change(pkt, decision, closed):
            return self._progress(closed)
        return self._write(rest, True, closed)

    def _write(self, packets: Iterator[MediaPacket], pause: bool,
               closed: list[Closed]) -> Progress:
        place, decide = self.plan.place, self.plan.decide
        for pkt in packets:
            placed = place(pkt)
            if placed is not None:  # nearly every packet: straight to the open segment
                assert self._writer is not None
                self._writer.write(pkt, placed[0], placed[1])
                continue
            decision = decide(pkt)
            if decision is _WRITE:
                assert self._writer is not None
                pts, dts = self.plan.out_timestamps(pkt)
                self._writer.write(pkt, pts, dts)
                continue
            if decision is Decision.SKIP:
                continue
            if pause:  # the rest goes on from the same iterator
                self._pending = (packets, pkt, decision)
                return self._progress(closed, paused=True)
            if self._change(pkt, decision, closed):
                break
        return self._progress(closed)

    def _change(self, pkt: MediaPacket, decision: Decision, closed: list[Closed]) -> bool:
        """Close and open segments as `decision` says (what it closed goes to `closed`), then
        write `pkt`; True when the recording is finished (and `pkt` not written)."""
        if decision is Decision.RESTART:
            jumped = self.plan.jumped
            self.plan.finish_run()  # the run that ended may hold the duration already
            if self.plan.done:  # (what the jump skipped lies past the end: not a gap)
                closed += self._close("end")
                return True
            closed += self._close("discontinuity")
            if jumped is not None:
                self._skipped.append(jumped)
            decision = self.plan.decide(pkt)
        match decision:
            case Decision.SKIP:
                return False
            case Decision.FINISH:
                closed += self._close("end")
                return True
            case Decision.CUT:
                closed += self._close("boundary")
                self._open(pkt)
            case Decision.START:
                self._open(pkt)
        assert self._writer is not None
        pts, dts = self.plan.out_timestamps(pkt)
        self._writer.write(pkt, pts, dts)
        return False

    def stop(self, reason: str = "stopped") -> Progress:
        """Close the open segment cleanly (cancel, shutdown, source failure); a paused batch's
        rest is dropped."""
        self._pending = None
        return self._progress(self._close(reason))

    def source_finished(self) -> Progress:
        """The source was read to its end (a file): what it held is all there is. The open
        segment closes as the `end`; the recording is done if it reached the duration (a file
        exactly as long as the duration has no packet at or past it), else it stays short."""
        self._pending = None
        self.plan.finish_run()  # before the close, which counts the steps it completes
        return self._progress(self._close("end"))

    def _open(self, pkt: MediaPacket) -> None:
        assert self._session is not None
        self._count += 1
        if self._count == 1:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:  # a full disk, say: the source's failure, like a write's
                raise SegmentError(f"cannot create the folder {self.folder.name}: {exc}") from None
        ext = FORMATS[self.fmt][1]
        self._writer = SegmentWriter(
            self.folder / f"segment-{self._count:05d}{ext}",
            self.fmt,
            self._session.streams,
            index=self._count,
            start_seconds=round(self.plan.position(pkt), 6),
            io_buffer_bytes=self.io_buffer_bytes,
        )

    def _close(self, reason: str) -> list[Closed]:
        """Close the open segment, if any, with the steps done once it is closed: at a cut or
        the finish, the plan has just counted the steps this segment completes."""
        writer, self._writer = self._writer, None
        if writer is None:
            return []
        if reason == "discontinuity":
            self.plan.count_passed()
        result = writer.close(reason)
        if result.duration >= FAST_MIN_SECONDS:
            # A segment written in a fraction of its duration (a file, read as fast as it is
            # recorded): the next ones get FFmpeg's large I/O buffer; a camera's keep the small
            # one, one of which each of hundreds of open segments holds.
            fast = result.duration >= FAST_FACTOR * (result.ended_at - result.started_at)
            self.io_buffer_bytes = FAST_IO_BUFFER_BYTES if fast else IO_BUFFER_BYTES
        return [(result, self.plan.steps_done)]

    def _progress(self, closed: list[Closed], paused: bool = False) -> Progress:
        skipped: tuple[float, ...] = ()
        if self._skipped:
            skipped, self._skipped = tuple(self._skipped), []
        return Progress(tuple(c[0] for c in closed), tuple(c[1] for c in closed), self.plan.done,
                        paused, skipped)
