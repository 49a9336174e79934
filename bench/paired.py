"""Two checkouts of the collector recording the same cameras at the same time: a paired A/B.

    .venv/bin/python bench/paired.py A_DIR B_DIR [--cameras 50] [--seconds 40]
                                     [--segment-seconds 10] [--servers 10] [--both-orders]

A_DIR and B_DIR are two checkouts of this repository (e.g. `git worktree add --detach ../base
HEAD~1`). Both run `python -m collector` from their own directory, are posted the same job of the
same N served cameras at the same moment, and their CPU is read over the same window ([8 s,
D - 4 s] after the post): whatever else the machine does falls on both, so B/A resolves changes
of a few per cent that sequential runs of bench/cameras.py (whose ffmpeg side alone varies by
±20 % between runs) cannot. The servers serve 2N readers. Prints both CPU figures in s per
camera-minute, B/A, and the frames each job recorded.

One side can come out ~2 % cheaper for being second (measured 2026-11-27: two identical-cost
builds gave B/A 0.977 and 0.979 with their places swapped). `--both-orders` runs the pair again
with B started and posted first and prints the geometric mean of the two B/A.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import cameras
from bench.cameras import (
    camera_limits,
    collect_body,
    collector_process,
    cpu_seconds,
    make_bench_clip,
    serve_cameras,
    wait_job,
)

SETTLE_S, TAIL_S = 8.0, 4.0


async def record(checkout: Path, urls: list[str], args: argparse.Namespace, tmp: Path,
                 out: dict[str, float], go: trio.Event,
                 task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    n = len(urls)
    async with collector_process(tmp, checkout, **camera_limits(n)) as (proc, base, _errors):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            body = collect_body(urls, args.seconds, args.segment_seconds)
            task_status.started()
            await go.wait()
            r = await client.post("/collect", json=body)
            r.raise_for_status()
            await trio.sleep(SETTLE_S)
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            await trio.sleep(args.seconds - SETTLE_S - TAIL_S)
            cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
            assert cpu0 is not None and cpu1 is not None
            out[f"cpu {checkout}"] = (cpu1 - cpu0) / n / ((t1 - t0) / 60)
            job = await wait_job(client, r.json()["job_id"], args.seconds + 60)
            out[f"frames {checkout}"] = sum(s["frames"] for src in job["sources"]
                                            for s in src["segments"])


async def pair(first: Path, second: Path, args: argparse.Namespace) -> dict[str, float]:
    """One paired run: both checkouts record the same served cameras at the same time (`first`
    is started and posted first)."""
    with tempfile.TemporaryDirectory(prefix="bench-paired-") as tmpname:
        tmp = Path(tmpname)
        clip = make_bench_clip(tmp / "clip.mkv")
        out: dict[str, float] = {}
        async with trio.open_nursery() as nursery:
            urls = await nursery.start(serve_cameras, clip, args.cameras, args.servers)
            go = trio.Event()
            with trio.fail_after(3 * args.seconds + 120):
                async with trio.open_nursery() as both:
                    for checkout in (first, second):
                        await both.start(record, checkout, urls, args, tmp / checkout.name, out,
                                         go)
                    go.set()
            nursery.cancel_scope.cancel()
    return out


async def main(args: argparse.Namespace) -> None:
    a, b = args.a.resolve(), args.b.resolve()
    ratios = []
    for first, second in ((a, b), (b, a)) if args.both_orders else ((a, b),):
        out = await pair(first, second, args)
        ca, cb = out[f"cpu {a}"], out[f"cpu {b}"]
        ratios.append(cb / ca)
        print(f"{args.cameras} cameras, {args.seconds:g} s, segments of "
              f"{args.segment_seconds:g} s, {'A' if first == a else 'B'} started first: "
              f"A {ca:.3f} B {cb:.3f} s CPU per camera-minute, B/A {cb / ca:.3f}; "
              f"frames A {out[f'frames {a}']:.0f} B {out[f'frames {b}']:.0f}", flush=True)
    if len(ratios) == 2:
        print(f"B/A both orders: {ratios[0]:.3f}, {ratios[1]:.3f}; "
              f"geometric mean {math.sqrt(ratios[0] * ratios[1]):.3f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="checkout A (the baseline)")
    parser.add_argument("b", type=Path, help="checkout B")
    parser.add_argument("--cameras", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=40, help="D: each job's duration")
    parser.add_argument("--segment-seconds", type=float, default=cameras.SEGMENT_S)
    parser.add_argument("--servers", type=int, default=10)
    parser.add_argument("--both-orders", action="store_true",
                        help="run the pair again with B started and posted first, and print the "
                             "geometric mean of the two B/A (one side can be favoured by ~2 %%)")
    args = parser.parse_args()
    if args.seconds < SETTLE_S + TAIL_S + 5 or args.cameras < 1:
        parser.error(f"--seconds must be at least {SETTLE_S + TAIL_S + 5:g}")
    if args.a.resolve().name == args.b.resolve().name:
        parser.error("the two checkouts need directories of different names")
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
