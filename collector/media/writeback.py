"""Starting the writeback of segment files in a thread of its own, never in the writer's.

`SegmentFile` asks the kernel to write a file's dirty pages back every MiB written
(`posix_fadvise(POSIX_FADV_DONTNEED)`), so that the fsync when the segment closes has little left
to do. On ext4 that call allocates the pages' blocks under the journal, and while other segments'
fsyncs force journal commits (cameras fed by one server pipeline cut together) it blocks: 13-69
ms measured in the event loop's thread at a cut with 100 cameras, which stalled the whole loop
(scheduler passes of 41-196 ms that used ~10 ms of CPU). So a file only hands a duplicate of its
descriptor to `kick()`, and one daemon thread gives the advice and closes the duplicate.

A file has at most one kick waiting (`Pending`), so the queue holds at most one descriptor per
open segment however slow the disk. The advice is only advice: the fsync at close still makes the
file durable if it is late or fails.
"""

from __future__ import annotations

import logging
import os
import queue
import threading

log = logging.getLogger(__name__)


class Pending:
    """Whether a file's kick is still queued (set by the writer, cleared by the thread)."""

    __slots__ = ("waiting",)

    def __init__(self) -> None:
        self.waiting = False


class Writeback:
    """One daemon thread, started with the first kick, that gives each queued advice."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[int, Pending]] = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def kick(self, fd: int, pending: Pending) -> None:
        """Start writing back the file open as `fd`, soon, in the writeback thread; nothing if
        its last kick is still waiting."""
        if pending.waiting:
            return
        try:
            copy = os.dup(fd)  # the writer may close its own before the thread gets to it
        except OSError:
            return
        pending.waiting = True
        self._start()
        self._queue.put((copy, pending))

    def drain(self) -> None:
        """Wait until every kick queued so far is given (tests)."""
        self._queue.join()

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="segment-writeback",
                                                daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            fd, pending = self._queue.get()
            try:
                # The whole file: muxers seek back now and then (to patch sizes, say).
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            except OSError:
                pass
            except Exception:  # never let the thread die: kicks would queue up for nothing
                log.exception("writeback.failed")
            finally:
                pending.waiting = False
                try:
                    os.close(fd)
                except OSError:
                    pass
                self._queue.task_done()


WRITEBACK = Writeback()
