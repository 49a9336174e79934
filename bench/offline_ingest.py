"""Offline ingest: a long file over HTTP (and HLS) collected as fast as the source gives it, the
collector vs `ffmpeg -c copy` on the same input.

    .venv/bin/python bench/offline_ingest.py [--seconds 120[,300[,600]]] [--runs 3]
                                             [--inputs ts,hls] [--segment-seconds 10]
                                             [--profile FILE [--profile-seconds 10]]

* The clip is made once per length and cached in $TMPDIR/camera-collector-bench/: the 720p25
  H.264 (~2 Mbit/s, 2 s GOP, no B-frames) + AAC clip of bench/cameras.py, `--seconds` long,
  remuxed without re-encoding to MPEG-TS (`ts`) and to a VOD HLS playlist of 2 s segments (`hls`).
  A length that is a multiple of 600 s above it (`--seconds 600,3600`: an hour, ~930 MiB, and as
  much again as HLS) is the 600 s clip looped, remuxed in seconds (ffmpeg `-stream_loop`).
  `python -m http.server` serves it on 127.0.0.1 in its own process (never measured; it is what
  tests/media/servers.serve_http runs, out of this process so it does not share our GIL and its
  "connection reset" tracebacks, when the collector stops reading before the end, stay quiet).
* (a) `python -m collector` (PORT=0, SQLite, data in a temp dir; one unmeasured job of the
  shortest clip first, since a process's first job pays for its imports) records the URL in one
  `POST /collect` job (`duration` = clip length - 2 s, since the end of a source is a failure that
  the collector would retry; `segment_seconds` S; mp4; `retry.max_attempts` 1 so a failure shows
  as one instead of a re-read). Wall time runs from just before the POST to the `completed` event
  on the job's WebSocket; CPU is the collector's utime+stime delta (/proc/<pid>/stat, all its
  threads) over the same window. One collector process serves every run.
* (b) `ffmpeg -i URL -c copy -f segment -segment_time S -reset_timestamps 1 out%03d.mp4` (the whole
  clip): wall time from spawn to exit, CPU from wait4's rusage.

S is 10 s by default, like bench/cameras.py (Frigate's record segments); it was 2 s until
2026-11-26, and the collector pays ~1 ms per segment that ffmpeg does not, so both are reported.

The runs alternate (collector, ffmpeg, collector, ...) so the noise of a shared box falls on both.
Video seconds recorded are counted with ffprobe in every output file (video packets / 25).
Throughput is video seconds per wall second (x realtime); CPU is seconds per minute of video;
each figure is the median over `--runs`.

A ratio at one length mixes two things: each side's start-up (ffmpeg's process start and probe,
~0.13 s here; the collector's POST, job and probe) and its steady pace. The longer the file, the
more the ratio tends to the steady pace's. With two lengths (`--seconds 120,300`; the runs then go
round every length, so the machine's noise falls on all of them alike) the table also gives the
**long-file limit**: video seconds per extra wall second between the shortest and the longest
clip, (video_long - video_short) / (wall_long - wall_short), from each side's medians.

Files of 64 MiB or more over HTTP(S) are read ahead in FFmpeg's own thread (the collector opens
them a second time as `async:URL`, pyav_source.READ_AHEAD_MIN_BYTES): the 300 s clip (~81 MB) is,
the 120 s one (~32 MB) is not. So the limit between those two mixes the two ways of reading (and
charges the second open, ~13 ms, to the longer clip's "extra" wall); `--seconds 300,600` (the
600 s clip is made once, ~4 min) gives the pace of files read ahead. A VOD HLS playlist is read
ahead at any length (its segments fetched by a thread of ours, collector/media/hls_vod.py).

`--profile FILE` then runs collector jobs on the longest clip back to back under
`py-spy record --nonblocking --threads -f raw` (those jobs are not in the table).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cameras import (
    FPS,
    clip_bitrate,
    collector_process,
    count_frames,
    cpu_seconds,
    make_bench_clip,
    pss_bytes,
    terminate,
    ws_progress_latencies,
)

CACHE = Path(tempfile.gettempdir()) / "camera-collector-bench"
TAIL_S = 2.0  # the job stops this much before the clip ends
HLS_SEGMENT_S = 2
# Clips longer than this, in whole multiples of it, are this one looped (make_inputs)
LOOPED_FROM_S = 600
SEGMENT_S = 10  # both sides' output segments, by default (--segment-seconds)
JOB_CEILING_S = 120  # one job, POST to completed


# ---------------------------------------------------------------------------------------- media


def make_inputs(seconds: int) -> Path:
    """The clip as MPEG-TS (`clip.ts`) and VOD HLS (`hls/index.m3u8`), made once per length."""
    folder = CACHE / f"offline-{seconds:g}s"
    if (folder / "done").exists():
        return folder
    # an hour is the 10-minute clip played k times, remuxed (timestamps go on across the joins),
    # in seconds rather than the ~25 minutes of encoding it would take
    looped = seconds > LOOPED_FROM_S and seconds % LOOPED_FROM_S == 0
    source = make_inputs(LOOPED_FROM_S) / "clip.ts" if looped else None
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "hls").mkdir(parents=True)
    base = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error"]
    if source is not None:
        subprocess.run([*base, "-stream_loop", str(seconds // LOOPED_FROM_S - 1),
                        "-i", str(source), "-map", "0", "-c", "copy", "-f", "mpegts",
                        str(folder / "clip.ts")], check=True)
    else:
        mkv = make_bench_clip(folder / "clip.mkv", seconds)
        subprocess.run([*base, "-i", str(mkv), "-map", "0", "-c", "copy", "-f", "mpegts",
                        str(folder / "clip.ts")], check=True)
        mkv.unlink()
    subprocess.run([*base, "-i", str(folder / "clip.ts"), "-map", "0", "-c", "copy", "-f", "hls",
                    "-hls_time", str(HLS_SEGMENT_S), "-hls_list_size", "0",
                    "-hls_playlist_type", "vod",
                    "-hls_segment_filename", str(folder / "hls" / "seg%04d.ts"),
                    str(folder / "hls" / "index.m3u8")], check=True)
    (folder / "done").touch()
    return folder


# ---------------------------------------------------------------------------------- results


@dataclass
class Run:
    side: str  # collector | ffmpeg
    wall_s: float
    cpu_s: float
    frames: int = 0  # video packets in the output files (one frame each with -c copy)
    missing: int = 0  # frames absent inside files (PTS steps)
    files: int = 0
    job_id: str = ""
    ok: bool = True  # the job completed / ffmpeg exited 0
    notes: list[str] = field(default_factory=list)

    @property
    def video_s(self) -> float:
        return self.frames / FPS

    @property
    def speed(self) -> float:
        """Video seconds recorded per wall second (x realtime)."""
        return self.video_s / self.wall_s if self.wall_s else float("nan")

    @property
    def cpu_per_video_minute(self) -> float:
        return self.cpu_s / (self.video_s / 60) if self.frames else float("nan")


def median(runs: list[Run], attr: str) -> float:
    return statistics.median(getattr(r, attr) for r in runs)


# ---------------------------------------------------------------------------------- server


async def serve_files(folder: Path,
                      task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
    """`python -m http.server` on 127.0.0.1:<free port> until cancelled; starts with its URL."""
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1",
         "--directory", str(folder)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(10):
            while b"\n" not in buf:  # "Serving HTTP on 127.0.0.1 port 41234 (http://...) ..."
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    raise RuntimeError(f"http.server exited: {buf!r}")
                buf += chunk
        port = int(buf.split(b" port ", 1)[1].split()[0])
        task_status.started(f"http://127.0.0.1:{port}")
        await proc.wait()
        raise RuntimeError(f"http.server exited with {proc.returncode}")
    finally:
        await terminate(proc)


# ------------------------------------------------------------------------------- collector


class Collector:
    """One `python -m collector` process for every run."""

    def __init__(self, proc: trio.Process, base: str, errors: list[str]) -> None:
        self.proc, self.base, self.errors = proc, base, errors

    async def ingest(self, client: httpx.AsyncClient, url: str, duration: float, name: str,
                     count: bool = True, segment_s: float = SEGMENT_S) -> Run:
        body = {"streams": [{"url": url, "name": name}], "duration": duration,
                "segment_seconds": segment_s, "retry": {"max_attempts": 1}}
        done = trio.Event()
        async with trio.open_nursery() as nursery:
            cpu0, t0 = cpu_seconds(self.proc.pid), time.perf_counter()
            r = await client.post("/collect", json=body)
            r.raise_for_status()
            job_id = r.json()["job_id"]
            ws = self.base.replace("http://", "ws://") + f"/ws/{job_id}?format=json"
            nursery.start_soon(ws_progress_latencies, ws, done)
            with trio.fail_after(JOB_CEILING_S):
                await done.wait()
            cpu1, t1 = cpu_seconds(self.proc.pid), time.perf_counter()
            nursery.cancel_scope.cancel()
        assert cpu0 is not None and cpu1 is not None
        run = Run("collector", wall_s=t1 - t0, cpu_s=cpu1 - cpu0, job_id=job_id)
        if not count:
            return run
        job = (await client.get(f"/jobs/{job_id}")).json()
        if job["status"] != "completed":
            run.ok = False
            run.notes.append(f"job {job['status']}: {job.get('error')}")
        if job.get("started_at") and job.get("finished_at"):
            run.notes.append(f"job record: {job['finished_at'] - job['started_at']:.2f} s "
                             "from started to finished")
        segments = [s for src in job["sources"] for s in src["segments"]]
        files = [Path(s["path"]) for s in segments]
        run.files = len(files)
        run.frames, run.missing = await count_frames(files, "packets")
        recorded = sum(s["frames"] for s in segments)
        if recorded != run.frames:
            run.notes.append(f"job record says {recorded} frames, ffprobe {run.frames}")
        return run


async def serve_collector(
    tmp: Path, task_status: trio.TaskStatus[Collector] = trio.TASK_STATUS_IGNORED
) -> None:
    async with collector_process(tmp) as (proc, base, errors):
        task_status.started(Collector(proc, base, errors))
        await trio.sleep_forever()


# ---------------------------------------------------------------------------------- ffmpeg


def ffmpeg_segments(url: str, out: Path, segment_s: float = SEGMENT_S) -> tuple[Run, list[Path]]:
    """Run the ffmpeg command to its end (blocking): wall time, CPU from wait4's rusage, files."""
    out.mkdir(parents=True)
    cmd = ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-i", url, "-c", "copy",
           "-f", "segment", "-segment_time", f"{segment_s:g}", "-reset_timestamps", "1",
           str(out / "out%03d.mp4")]
    log = out / "ffmpeg.log"
    with open(log, "wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    run = Run("ffmpeg", wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime)
    if proc.returncode != 0:
        run.ok = False
        run.notes.append(f"ffmpeg exited {proc.returncode}: {log.read_text()[:200]}")
    return run, sorted(out.glob("out*.mp4"))


async def ingest_ffmpeg(url: str, out: Path, segment_s: float = SEGMENT_S) -> Run:
    run, files = await trio.to_thread.run_sync(ffmpeg_segments, url, out, segment_s)
    run.files = len(files)
    run.frames, run.missing = await count_frames(files, "packets")
    return run


# ------------------------------------------------------------------------------------ main


def limit(short: list[Run], long: list[Run]) -> float:
    """Video seconds per wall second between two clip lengths: the pace without start-up."""
    extra_wall = median(long, "wall_s") - median(short, "wall_s")
    extra_video = median(long, "video_s") - median(short, "video_s")
    return extra_video / extra_wall if extra_wall > 0 else float("nan")


def limit_table(results: dict[tuple[str, int], tuple[list[Run], list[Run]]],
                lengths: list[int]) -> str:
    short, long = lengths[0], lengths[-1]
    lines = [f"| input | long-file limit ({short} s -> {long} s) | collector x realtime "
             "| ffmpeg x realtime | collector / ffmpeg |", "|---|---|---:|---:|---:|"]
    for name in dict.fromkeys(n for n, _ in results):
        (cs, fs), (cl, fl) = results[(name, short)], results[(name, long)]
        c, f = limit(cs, cl), limit(fs, fl)
        lines.append(f"| {name} | extra video / extra wall | {c:.0f} | {f:.0f} | **{c / f:.2f}** |")
    return "\n".join(lines)


def table(results: dict[tuple[str, int], tuple[list[Run], list[Run]]]) -> str:
    lines = ["| input | clip s | side | x realtime | wall s | CPU s / video-min "
             "| video s recorded | missing in files | files | runs ok |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (name, seconds), (coll, ff) in results.items():
        for runs in (coll, ff):
            lines.append(
                f"| {name} | {seconds} | {runs[0].side} | {median(runs, 'speed'):.0f} "
                f"| {median(runs, 'wall_s'):.2f} | {median(runs, 'cpu_per_video_minute'):.2f} "
                f"| {median(runs, 'video_s'):.1f} | {max(r.missing for r in runs)} "
                f"| {median(runs, 'files'):.0f} | {sum(r.ok for r in runs)}/{len(runs)} |")
        lines.append(
            f"| {name} | {seconds} | **collector / ffmpeg** "
            f"| **{median(coll, 'speed') / median(ff, 'speed'):.2f}** | "
            f"| **{median(coll, 'cpu_per_video_minute') / median(ff, 'cpu_per_video_minute'):.2f}**"
            " | | | | |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    load = [os.getloadavg()]
    folders = {seconds: make_inputs(seconds) for seconds in args.seconds}
    for seconds, folder in folders.items():
        clip = folder / "clip.ts"
        print(f"clip: {seconds:g} s, 1280x720 {FPS} fps, GOP 2 s, "
              f"{clip_bitrate(clip) / 1e6:.2f} Mbit/s MPEG-TS ({clip.stat().st_size / 2**20:.1f} "
              f"MiB); collector duration {seconds - TAIL_S:g} s; ({folder})", flush=True)
    print(f"segments of {args.segment_seconds:g} s; {args.runs} runs per side, input and length; "
          f"clips made/cached in {time.monotonic() - started:.0f} s", flush=True)
    paths = {"ts": "clip.ts", "hls": "hls/index.m3u8"}
    results: dict[tuple[str, int], tuple[list[Run], list[Run]]] = {
        (name, seconds): ([], []) for name in args.inputs for seconds in args.seconds}
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmpname:
        tmp = Path(tmpname)
        async with trio.open_nursery() as nursery:
            servers = {seconds: await nursery.start(serve_files, folder)
                       for seconds, folder in folders.items()}
            collector: Collector = await nursery.start(serve_collector, tmp)
            async with httpx.AsyncClient(base_url=collector.base, timeout=30) as client:
                await client.get("/")
                shortest = args.seconds[0]  # a first job warms the process up; not measured
                await collector.ingest(client, f"{servers[shortest]}/{paths[args.inputs[0]]}",
                                       shortest - TAIL_S, "warm-up", count=False)
                shutil.rmtree(tmp / "collector" / "jobs", ignore_errors=True)
                for name in args.inputs:
                    for i in range(args.runs):  # each run goes round every length
                        for seconds in args.seconds:
                            coll, ff = results[(name, seconds)]
                            url = f"{servers[seconds]}/{paths[name]}"
                            coll.append(await collector.ingest(
                                client, url, seconds - TAIL_S, f"{name}{seconds}-{i}",
                                segment_s=args.segment_seconds))
                            # each side starts with the other's files gone (counted already):
                            # ffmpeg ran with the collector's output in the page cache
                            shutil.rmtree(tmp / "collector" / "jobs", ignore_errors=True)
                            ff.append(await ingest_ffmpeg(url, tmp / "ffmpeg" / f"{name}{i}",
                                                          args.segment_seconds))
                            for r in (coll[-1], ff[-1]):
                                print(f"  {name} {seconds} s run {i + 1} {r.side}: "
                                      f"{r.speed:.0f}x realtime, {r.wall_s:.2f} s wall, "
                                      f"{r.cpu_s:.2f} s CPU, {r.video_s:.1f} s video, "
                                      f"{r.files} files" + "".join(f"; {n}" for n in r.notes),
                                      flush=True)
                            shutil.rmtree(tmp / "collector" / "jobs", ignore_errors=True)
                            shutil.rmtree(tmp / "ffmpeg", ignore_errors=True)
                pss = pss_bytes(collector.proc.pid) or 0
                if args.profile:
                    longest = args.seconds[-1]
                    await profile(collector, client,
                                  f"{servers[longest]}/{paths[args.inputs[0]]}",
                                  longest - TAIL_S, args.profile, args.profile_seconds)
            nursery.cancel_scope.cancel()
    load.append(os.getloadavg())
    print(table(results))
    if len(args.seconds) > 1:
        print(limit_table(results, args.seconds))
    for line in collector.errors[:5]:
        print(f"  collector log: {line}")
    print(f"  collector PSS after the runs {pss / 2**20:.1f} MiB; load average "
          f"{' / '.join(f'{v:.2f}' for v in load[0])} at start, "
          f"{' / '.join(f'{v:.2f}' for v in load[1])} at end (1/5/15 min); "
          f"run took {time.monotonic() - started:.0f} s")


async def profile(collector: Collector, client: httpx.AsyncClient, url: str, duration: float,
                  out: Path, seconds: float) -> None:
    """Jobs back to back for `seconds` with py-spy attached (not measured):
    `py-spy record --nonblocking --threads -p PID -d SECONDS -f raw -o FILE`."""
    spy = Path(sys.executable).with_name("py-spy")
    proc = await trio.lowlevel.open_process(
        [str(spy), "record", "--nonblocking", "--threads", "-p", str(collector.proc.pid),
         "-d", f"{seconds:g}", "-f", "raw", "-o", str(out)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs: list[Run] = []
    try:
        await trio.sleep(0.5)  # py-spy attaches
        while proc.returncode is None:
            runs.append(await collector.ingest(client, url, duration, f"profiled{len(runs)}",
                                               count=False))
            await client.delete(f"/jobs/{runs[-1].job_id}", params={"purge": "true"})
            await trio.lowlevel.checkpoint()
            proc.poll()
    finally:
        with trio.move_on_after(seconds + 30):
            await proc.wait()
        await terminate(proc, signal.SIGINT)
    print(f"  profiled: {len(runs)} jobs back to back, median {median(runs, 'wall_s'):.2f} s wall; "
          f"py-spy raw stacks in {out}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", default="120",
                        help="clip length, seconds; two or more, comma-separated (120,300), "
                             "add the long-file limit between the shortest and the longest")
    parser.add_argument("--runs", type=int, default=3, help="runs per side and input")
    parser.add_argument("--segment-seconds", type=float, default=SEGMENT_S,
                        help="S: segment length of both sides (default: Frigate's 10 s)")
    parser.add_argument("--inputs", default="ts,hls",
                        help="comma-separated: ts (one MPEG-TS file), hls (VOD playlist)")
    parser.add_argument("--profile", type=Path, default=None,
                        help="after the runs, record collector jobs with py-spy into FILE")
    parser.add_argument("--profile-seconds", type=float, default=10,
                        help="py-spy's -d: jobs run back to back that long")
    args = parser.parse_args()
    args.inputs = [s for s in args.inputs.split(",") if s]
    try:
        args.seconds = sorted({int(s) for s in args.seconds.split(",") if s.strip()})
    except ValueError:
        parser.error("--seconds takes whole seconds, comma-separated")
    if not set(args.inputs) <= {"ts", "hls"} or not args.inputs:
        parser.error("--inputs takes ts and/or hls")
    if not args.seconds or args.seconds[0] < 2 * TAIL_S + args.segment_seconds or args.runs < 1:
        parser.error(f"--seconds must be at least {2 * TAIL_S + args.segment_seconds:g}; "
                     "--runs at least 1")
    return args


if __name__ == "__main__":
    trio.run(main, parse_args())
