"""CPU per camera: the native trio RTSP client vs PyAV's RTSP path vs `ffmpeg -c copy` processes.

    .venv/bin/python -m bench.rtsp_cpu [--cameras 1 10 20] [--seconds 10] [--size 1280x720]

One GStreamer server (tests/media/rtsp_server.py, `--shared`: one looping pipeline for every
client) serves a generated H.264 + AAC clip; N clients read it over RTSP/TCP for `--seconds`.
Native and PyAV clients run in this process and hand packets to a sink that only counts them
(no muxing: that cost is the same for both); their CPU is this process's (all threads). FFmpeg
runs N `ffmpeg -rtsp_transport tcp -i URL -c copy -f null -` processes; their CPU is theirs
(RUSAGE_CHILDREN once reaped). The server's CPU is never counted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import trio

from collector.errors import SourceError
from collector.media.packets import MediaPacket, StreamInfo
from collector.media.pyav_source import PyAVOpener
from collector.rtsp.opener import RtspOpener
from tests.media.clips import make_clip
from tests.media.servers import serve_rtsp

WARM_UP_S = 5.0


class CountingSink:
    def __init__(self) -> None:
        self.count = 0
        self.batches = 0

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False,
               max_jump: float | None = None) -> None:
        pass

    def packets(self, batch: Sequence[MediaPacket]) -> None:
        self.count += len(batch)
        self.batches += 1


async def _run_openers(kind: str, url: str, cameras: int, seconds: float) -> tuple[float, int, int]:
    limiter = trio.CapacityLimiter(cameras + 1)
    sinks = [CountingSink() for _ in range(cameras)]

    async def one(sink: CountingSink) -> None:
        opener = RtspOpener() if kind == "native" else PyAVOpener(limiter)
        try:
            await opener.run(url, {"rtsp_transport": "tcp"}, sink)
        except SourceError as exc:
            print(f"  {kind}: {exc}")

    async with trio.open_nursery() as nursery:
        for sink in sinks:
            nursery.start_soon(one, sink)
        await trio.sleep(WARM_UP_S)  # connect, set up, line up A/V: outside the measured window
        before, counted = time.process_time(), sum(s.count for s in sinks)
        batches = sum(s.batches for s in sinks)
        await trio.sleep(seconds)
        cpu = time.process_time() - before
        got = sum(s.count for s in sinks) - counted
        batches = sum(s.batches for s in sinks) - batches
        nursery.cancel_scope.cancel()
    return cpu, got, batches


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _run_ffmpeg(url: str, cameras: int, seconds: float) -> tuple[float, int, int]:
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url,
           "-c", "copy", "-f", "null", "-"]
    procs = [await trio.lowlevel.open_process(cmd, stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL)
             for _ in range(cameras)]
    try:
        await trio.sleep(WARM_UP_S)  # connect, probe and set up outside the measured window
        before = sum(_process_cpu(p.pid) for p in procs)
        await trio.sleep(seconds)
        cpu = sum(_process_cpu(p.pid) for p in procs) - before
    finally:
        for proc in procs:
            proc.terminate()
        with trio.CancelScope(shield=True):
            for proc in procs:
                await proc.wait()
    return cpu, -1, -1


async def main(cameras: list[int], seconds: float, size: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="rtsp-bench-"))
    clip = make_clip(folder / "clip.mkv", seconds=20, size=size)
    print(f"clip {size} 25 fps H.264 + AAC, {clip.path.stat().st_size * 8 / 20 / 1e6:.2f} Mbit/s; "
          f"{seconds:g} s per run; cpus={os.cpu_count()}")
    rows = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_rtsp, clip.path, shared=True))
        url = server.url()
        for n in cameras:
            for kind in ("native", "pyav", "ffmpeg"):
                if kind == "ffmpeg":
                    cpu, got, batches = await _run_ffmpeg(url, n, seconds)
                else:
                    cpu, got, batches = await _run_openers(kind, url, n, seconds)
                rows.append((n, kind, cpu, got, batches))
                print(f"  {kind:7} x{n:<3} cpu {cpu:6.2f} s")
        nursery.cancel_scope.cancel()
    print()
    print(f"{'cameras':>7} {'client':>7} {'cpu %/camera':>13} {'packets/s':>10} {'wakeups/s':>10}")
    for n, kind, cpu, got, batches in rows:
        per_cam = 100 * cpu / seconds / n
        pps = f"{got / seconds / n:10.1f}" if got >= 0 else f"{'-':>10}"
        wps = f"{batches / seconds / n:10.1f}" if batches >= 0 else f"{'-':>10}"
        print(f"{n:>7} {kind:>7} {per_cam:13.2f} {pps} {wps}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 10, 20])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--size", default="1280x720")
    args = parser.parse_args()
    trio.run(main, args.cameras, args.seconds, args.size)
