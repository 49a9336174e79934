"""A job source lends its Recorder to its camera's reading thread, which muxes paced batches there.

Why: a file or VOD playlist over HTTP is demuxed far faster than real time. Handed to the trio
thread batch by batch to be muxed there, the demuxing and the muxing take turns instead of
overlapping: both need the GIL, which PyAV drops and takes back around every FFmpeg call, and the
reading thread waits for each hand-over. Muxing in the thread that demuxed the packets is what
`ffmpeg -c copy` does, and Moonfire NVR's streamer (one thread reads and writes a stream).

Ownership: the job owns the recorder and everything it announces; the thread only runs
`Recorder.write` on batches, and keeps what it returned here until the job takes it. The job
lends the recorder only once it has handled every event its camera sent it, so the recorder
is up to date (its session, its last batch); the camera takes the loan back (`hold`) before it
sends the job an event the job must handle with the recorder itself (a new session, a batch it
did not write, the end of a session); the job takes the recorder back (`take`) before it
touches it, waiting if the thread is writing a batch. So batches reach the recorder in order,
from one thread at a time, and nothing the thread wrote is lost when a session ends or is
abandoned mid-batch. A loan is for one session, the one the job's recorder is in: the thread
names the session of each batch, so a thread abandoned mid-batch (its session ended, the
camera reconnects) can never write its old session's batches with a recorder that the job has
since closed for the outage and lent again.

States, under one lock (the thread and the trio thread both change them):
    HELD  the job's: the thread skips it, and the camera sends the job its batches instead
    LENT  the thread may take it for its next batch (`write_here`)
    BUSY  the thread is writing a batch with it
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from enum import Enum, auto

import outcome
import trio

from collector.media.packets import MediaPacket
from collector.media.recorder import Progress, Recorder


class _State(Enum):
    HELD = auto()
    LENT = auto()
    BUSY = auto()


class RecorderLoan:
    def __init__(self, recorder: Recorder) -> None:
        self._recorder = recorder
        self._lock = threading.Lock()
        self._state = _State.HELD
        self._unhandled = 0  # events the camera sent the job that it has not handled yet
        self._session: int | None = None  # the session the recorder records: lent for it only
        self._finished = False  # the thread wrote the last batch (done, or an error): never lend
        self._wanted = False  # the job waits to take the recorder back from a BUSY thread
        self._idle: trio.Event | None = None
        self._results: list[outcome.Outcome[Progress]] = []
        self._token = trio.lowlevel.current_trio_token()

    # --- the camera's reading thread -------------------------------------------------------

    def write_here(self, batch: Sequence[MediaPacket], session: int) -> bool:
        """Mux `batch`, of `session`, in the calling thread if the recorder is lent for that
        session; False if it is not."""
        with self._lock:
            if self._state is not _State.LENT or session != self._session:
                return False
            self._state = _State.BUSY
        result = outcome.capture(self._recorder.write, batch)
        with self._lock:
            self._results.append(result)
            if isinstance(result, outcome.Error) or result.value.done:
                self._finished = True
            keep = not (self._finished or self._unhandled or self._wanted)
            self._state = _State.LENT if keep else _State.HELD
            idle, self._idle, self._wanted = self._idle, None, False
        if idle is not None:
            try:
                self._token.run_sync_soon(idle.set)
            except trio.RunFinishedError:
                pass  # nobody is left to wait
        return True

    # --- the camera (trio thread) ----------------------------------------------------------

    def hold(self) -> None:
        """An event the job must handle with the recorder is on its way: stop lending it."""
        with self._lock:
            self._unhandled += 1
            if self._state is _State.LENT:
                self._state = _State.HELD  # BUSY: HELD once that batch is written

    # --- the job (trio thread) -------------------------------------------------------------

    @property
    def recorder(self) -> Recorder:
        """The recorder, for the job only, and only between `take()` and `handled()`."""
        assert self._state is _State.HELD, "the recorder is lent"
        return self._recorder

    def results(self) -> list[outcome.Outcome[Progress]]:
        """What the thread's writes returned since the last call, in order."""
        with self._lock:
            results, self._results = self._results, []
        return results

    async def take(self) -> list[outcome.Outcome[Progress]]:
        """Take the recorder back (waiting for a batch being written); returns `results()`."""
        with self._lock:
            if self._state is _State.BUSY:
                self._wanted = True
                idle = self._idle = trio.Event()
            else:
                self._state, idle = _State.HELD, None
        if idle is not None:
            await idle.wait()
        return self.results()

    def handled(self, session: int | None) -> None:
        """The job handled one held event, after which its recorder records `session` (None: the
        session ended); once it has handled them all, lend the recorder for that session."""
        with self._lock:
            assert self._unhandled > 0, "handled an event the camera did not hold the loan for"
            self._unhandled -= 1
            self._session = session
            if self._unhandled == 0 and not self._finished and self._state is _State.HELD:
                self._state = _State.LENT
