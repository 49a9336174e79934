"""How fast can any PyAV remux loop go? The ceiling under offline ingest's target.

    .venv/bin/python bench/remux_ceiling.py [--seconds 120,300] [--runs 5]
                                            [--sides ffmpeg,minimal,pipeline[,threaded]]

The clips of bench/offline_ingest.py (MPEG-TS over HTTP, 720p25 H.264 + AAC) are remuxed into
10 s fragmented-MP4 segments three ways, one after the other and alternating, each in its own
process:

* `ffmpeg`: `ffmpeg -i URL -c copy -f segment -segment_time 10 -reset_timestamps 1` (the
  baseline of the issue; plain MP4, one write per 256 KiB);
* `minimal`: the least Python a PyAV remux can have: demux, strip the ADTS header off each AAC
  packet (a new `av.Packet` around a view), point the packet at the output stream, `mux_one`; a
  new file at the first key frame after each 10 s. No copy, no timestamps touched, no checks;
* `pipeline`: what a job's reading thread does, without the service around it:
  `pyav_source.describe_streams` and `to_media_packet`, batches of 256 handed to a `Recorder`
  (cut plan, timestamp shift and repair, `SegmentWriter`, fsync-free);
* `threaded` (only when asked for): the same pipeline split over two threads, the demux and
  `to_media_packet` in one, the `Recorder` in the other, batches of 256 through a queue of 4.
  Both threads spend much of their time in FFmpeg without the GIL (reading, muxing), so this
  asks whether the second core helps. It does not: each packet's two GIL releases become
  hand-overs between the threads (BENCHMARKS.md, tenth session).

Times are taken inside each process, from opening the URL to the last file closed (the
interpreter's start and the imports are left out; ffmpeg's process start is in, ~10 ms). Every
output's video packets are counted with ffprobe. The headline is the long-file limit of
bench/offline_ingest.py: (extra video) / (extra wall) between the shortest and longest clip,
which no start-up cost enters; each side's limit is then divided by ffmpeg's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.cameras import count_frames  # noqa: E402
from bench.offline_ingest import TAIL_S, make_inputs, serve_files  # noqa: E402

SEGMENT_S = 10
SIDES = ("ffmpeg", "minimal", "pipeline", "threaded")
DEFAULT_SIDES = "ffmpeg,minimal,pipeline"


def minimal(url: str, out: Path) -> None:
    import av

    inp = av.open(url)
    streams = [s for s in inp.streams if s.type in ("video", "audio")]
    video = next(s.index for s in streams if s.type == "video")
    adts = {s.index for s in streams if s.codec_context.name == "aac"
            and not s.codec_context.extradata}
    container, outs, start, count = None, {}, 0, 0
    for p in inp.demux(streams):
        if p.dts is None:
            continue
        index = p.stream_index
        if index == video and p.is_keyframe and (
                container is None or (p.pts - start) * p.time_base >= SEGMENT_S):
            if container is not None:
                container.close()
            count += 1
            container = av.open(str(out / f"m{count:03d}.mp4"), "w", format="mp4", options={
                "movflags": "frag_keyframe+empty_moov+default_base_moof",
                "frag_duration": "500000"})
            outs = {}
            for s in streams:
                o = container.add_stream_from_template(s, opaque=True)
                o.time_base = s.time_base
                if s.index in adts:  # AAC LC, 48 kHz, mono: the clip's
                    o.codec_context.extradata = bytes.fromhex("1188")
                outs[s.index] = o
            start = p.pts
        if container is None:
            continue
        if index in adts:
            q = av.Packet(memoryview(p)[7:])
            q.pts, q.dts, q.time_base, q.duration = p.pts, p.dts, p.time_base, p.duration
            p = q
        p.stream = outs[index]
        container.mux_one(p)
    if container is not None:
        container.close()
    inp.close()


def _read_path(url: str, out: Path, duration: float) -> tuple[Any, Iterator[list], Any]:
    """The job's read path without the service: the open input, an iterator of its packets as
    batches of 256 `MediaPacket`s (the last one shorter), and the `Recorder` for them."""
    import av

    from collector.media.cutting import CutPlan
    from collector.media.packets import SessionInfo
    from collector.media.pyav_source import describe_streams, to_media_packet
    from collector.media.recorder import Recorder

    container = av.open(url)
    chosen, infos = describe_streams(container)
    bases = {i.index: i.time_base for i in infos}
    adts = {i.index: i.extradata is not None for i in infos}
    recorder = Recorder(out, "mp4", CutPlan(duration=duration, segment_seconds=SEGMENT_S))
    recorder.new_session(SessionInfo(session=1, streams=infos))

    def batches() -> Iterator[list]:
        batch: list = []
        for packet in container.demux(chosen):
            if packet.size == 0:
                continue
            index = packet.stream_index
            batch.append(to_media_packet(packet, bases[index], adts[index]))
            if len(batch) >= 256:
                yield batch
                batch = []
        if batch:
            yield batch

    return container, batches(), recorder


def pipeline(url: str, out: Path, duration: float) -> None:
    container, batches, recorder = _read_path(url, out, duration)
    for batch in batches:
        if recorder.write(batch).done:
            break
    recorder.stop()
    container.close()


def threaded(url: str, out: Path, duration: float) -> None:
    import queue
    import threading

    container, batches, recorder = _read_path(url, out, duration)
    handed: queue.Queue[list | None] = queue.Queue(maxsize=4)
    done = threading.Event()

    def read() -> None:
        for batch in batches:
            handed.put(batch)
            if done.is_set():
                break
        handed.put(None)

    reader = threading.Thread(target=read)
    reader.start()
    while (batch := handed.get()) is not None:
        if recorder.write(batch).done:
            done.set()
            while handed.get() is not None:  # let the reader finish its put and stop
                pass
            break
    recorder.stop()
    reader.join()
    container.close()


def child(side: str, url: str, out: Path, duration: float) -> None:
    import av  # noqa: F401  (imports before the clock: the functions' own imports are then free)

    import collector.media.pyav_source
    import collector.media.recorder  # noqa: F401

    started = time.perf_counter()
    if side == "minimal":
        minimal(url, out)
    elif side == "threaded":
        threaded(url, out, duration)
    else:
        pipeline(url, out, duration)
    print(json.dumps({"wall_s": time.perf_counter() - started}))


def fresh(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)


def outputs(out: Path) -> list[Path]:
    return sorted(out.glob("*.mp4"))


async def run_side(side: str, url: str, out: Path, seconds: int) -> tuple[float, int]:
    """One run in its own process: (wall seconds, video packets written)."""
    fresh(out)
    if side == "ffmpeg":
        started = time.perf_counter()
        await trio.run_process(
            ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", url, "-c", "copy", "-f",
             "segment", "-segment_time", str(SEGMENT_S), "-reset_timestamps", "1",
             str(out / "out%03d.mp4")], stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - started
    else:
        proc = await trio.run_process(
            [sys.executable, __file__, "--child", side, url, str(out), str(seconds - TAIL_S)],
            capture_stdout=True)
        wall = json.loads(proc.stdout)["wall_s"]
    frames, missing = await count_frames(outputs(out), "packets")
    if missing:
        raise RuntimeError(f"{side}: {missing} frames missing inside its files")
    return wall, frames


async def main(args: argparse.Namespace) -> None:
    folders = {s: make_inputs(s) for s in args.seconds}
    walls: dict[tuple[str, int], list[float]] = {}
    frames: dict[tuple[str, int], int] = {}
    with tempfile.TemporaryDirectory(prefix="remux-ceiling-") as tmp:
        async with trio.open_nursery() as nursery:
            base = {s: await nursery.start(serve_files, folders[s]) for s in args.seconds}
            for run in range(args.runs):
                for seconds in args.seconds:
                    for side in args.sides:
                        wall, n = await run_side(side, f"{base[seconds]}/clip.ts",
                                                 Path(tmp) / side, seconds)
                        walls.setdefault((side, seconds), []).append(wall)
                        frames[side, seconds] = n
                        print(f"  run {run + 1} {seconds} s {side}: {wall:.3f} s, {n} frames",
                              flush=True)
            nursery.cancel_scope.cancel()
    short, long = args.seconds[0], args.seconds[-1]
    print("| side | " + " | ".join(f"{s} s clip: wall s (x realtime)" for s in args.seconds)
          + f" | long-file limit ({short} -> {long} s) x realtime | / ffmpeg's |")
    print("|---|" + "---:|" * (len(args.seconds) + 2))
    limits = {}
    for side in args.sides:
        cells = []
        for s in args.seconds:
            wall = statistics.median(walls[side, s])
            cells.append(f"{wall:.3f} ({frames[side, s] / 25 / wall:.0f})")
        extra_wall = statistics.median(walls[side, long]) - statistics.median(walls[side, short])
        limits[side] = (frames[side, long] - frames[side, short]) / 25 / extra_wall
        print(f"| {side} | " + " | ".join(cells)
              + f" | {limits[side]:.0f} | **{limits[side] / limits['ffmpeg']:.2f}** |")
    print(f"  medians of {args.runs} runs; frames written: "
          + ", ".join(f"{k[0]} {k[1]} s {v}" for k, v in sorted(frames.items())))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", default="120,300", help="two or more clip lengths")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sides", default=DEFAULT_SIDES,
                        help=f"comma-separated, from {', '.join(SIDES)}; ffmpeg is always run")
    parser.add_argument("--child", nargs=4, metavar=("SIDE", "URL", "OUT", "DURATION"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return args
    args.seconds = sorted({int(s) for s in args.seconds.split(",") if s.strip()})
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    if unknown := set(sides) - set(SIDES):
        parser.error(f"--sides: unknown {', '.join(sorted(unknown))}")
    args.sides = ["ffmpeg", *[s for s in SIDES[1:] if s in sides]]
    if len(args.seconds) < 2 or args.runs < 1:
        parser.error("--seconds needs two lengths, --runs at least 1")
    return args


if __name__ == "__main__":
    arguments = parse_args()
    if arguments.child:
        side, url, out, duration = arguments.child
        child(side, url, Path(out), float(duration))
    else:
        trio.run(main, arguments)
