"""A job source's announcer (actors/job.py): closed segments are made durable, then announced, in
order; what piled up while it waited on the disk goes to the disk in one call."""

from __future__ import annotations

from dataclasses import dataclass, field

import trio

from actors.job import _Announcer
from collector.media.recorder import Progress


def progress(n: int) -> Progress:
    return Progress((n,), (n,), False)  # type: ignore[arg-type]  # named by its number


@dataclass
class FakeJob:
    """The announcer's view of a job: `_make_durable` waits until the test lets it finish."""

    durable: list[list[int]] = field(default_factory=list)
    applied: list[int] = field(default_factory=list)
    disk: trio.Event = field(default_factory=trio.Event)

    async def _make_durable(self, group: list[Progress]) -> None:
        self.durable.append([p.steps[0] for p in group])
        await self.disk.wait()
        self.disk = trio.Event()

    def _apply(self, src: object, p: Progress) -> None:
        self.applied.append(p.steps[0])


async def test_what_piles_up_during_an_fsync_is_made_durable_together_in_order(autojump_clock):
    """Segments put while the disk is busy with the first are fsync'ed in one call, but never
    past a `caught_up()` marker; each is announced only after its fsync, in the order put."""
    job = FakeJob()
    announcer = _Announcer(job, src=None)  # type: ignore[arg-type]
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(announcer.run)
        announcer.put(progress(1))
        await trio.sleep(1)
        announcer.put(progress(2))
        announcer.put(progress(3))

        async def caught_up() -> None:
            await announcer.caught_up()
            order.append(f"caught up after {job.applied}")

        nursery.start_soon(caught_up)
        await trio.sleep(1)
        announcer.put(progress(4))
        for _ in range(3):
            job.disk.set()
            await trio.sleep(1)
        announcer.close()
    assert job.durable == [[1], [2, 3], [4]]
    assert job.applied == [1, 2, 3, 4]
    assert order == ["caught up after [1, 2, 3]"]


async def test_a_stopped_announcer_hands_back_what_it_had_not_announced(autojump_clock):
    """Cancelled while fsync'ing a group, the announcer hands that group back, with what was
    still queued, so the job announces it on its way out; a waiter is not left hanging."""
    job = FakeJob()
    announcer = _Announcer(job, src=None)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(announcer.run)
        announcer.put(progress(1))
        await trio.sleep(1)
        announcer.put(progress(2))
        announcer.put(progress(3))
        job.disk.set()
        await trio.sleep(1)  # now fsync'ing [2, 3]
        announcer.put(progress(4))
        nursery.cancel_scope.cancel()
    with trio.fail_after(1):
        await announcer.caught_up()
    assert job.durable == [[1], [2, 3]]
    assert job.applied == [1]
    assert [p.steps[0] for p in announcer.take_leftovers()] == [2, 3, 4]
