"""Recording N RTSP cameras: the collector (one process) vs one `ffmpeg -c copy` process per camera.

    .venv/bin/python bench/cameras.py [--cameras 10] [--seconds 40] [--segment-seconds 10]
                                      [--probe packets|frames] [--together]

One run, the same streams and the same duration for both sides, run one after the other (on a
2-core box two sides at once would compete for the same cores and the same servers), or with
`--together` at the same time: then both CPU windows are the same seconds of a shared, noisy
machine, which the ratio needs more than idle cores (at 50 cameras both sides and the servers
take ~1.1 of the 2 cores):

* ~10 `tests/media/rtsp_server.py --shared --one-pipeline` processes serve N mount paths (N/10
  each, all of one server's paths from one looping pipeline, as the issue asks: "shared media
  factories with a shared key per group") of a generated 720p25 H.264 (~2 Mbit/s, 2 s GOP, no
  B-frames) + AAC clip, looped without re-encoding. The servers and their ffmpeg feeders are never
  measured. (Until 2026-11-26 each path had its own pipeline and feeder: at 100 cameras the
  servers took ~2 cores and starved both sides.)
* (a) `python -m collector` (PORT=0, data in a temp dir) records the N cameras in one job
  (`POST /collect`, `duration` D, `segment_seconds` S, `rtsp_transport=tcp`). Before it, a job of
  `--small-cameras` cameras gives the PSS base for the marginal memory per camera. During the main
  job a few tiny jobs (0.5 s of an already recorded camera, so they add no upstream session) time
  `POST /collect`; a JSON WebSocket on the main job times each progress event's arrival from its
  segment's cut (`segment.end_time`: the fsync before publication is in it) and from its own
  publication (the event's `at`, stamped once the segment is durable: the delivery alone).
* (b) N `ffmpeg -rtsp_transport tcp -i URL -c copy -t D -f segment -segment_time S
  -reset_timestamps 1 out%03d.mp4` processes (`-t D` bounds them like the job's `duration`).

S, the segment length of both sides, is 10 s by default: what Frigate's record preset, the
issue's baseline, writes (RECORD_SEGMENT_TIME_SECONDS = 10). The collector pays ~1 ms of CPU per
segment (open, close, fsync, database rows, a progress event), so `--segment-seconds 2` (the
setting until 2026-11-26) costs it ~15 % more per camera and ffmpeg next to nothing.

CPU is the utime+stime delta (/proc/<pid>/stat, all threads) over the same steady-state window of
each side ([warm-up, D] seconds after the job is posted / the processes are spawned, by default
[D/2, D] = [20, 40] s), per camera and per minute of wall clock. The window starts late because
ffmpeg's start-up (probing the stream) is dear and slow with many processes on 2 cores: 50 of
them spent 2.00, 0.84 and 0.53 s per camera-minute in their first three 5 s intervals and
0.44-0.48 from 15 s on (2026-11-27); the collector is flat from its first read. Until 2026-11-27
the default was D = 20 s and a window from 5 s, which counted part of ffmpeg's start-up (its
figure read ~0.6 instead of ~0.47) and so flattered the collector's ratio by ~25 %. PSS is
read from /proc/<pid>/smaps_rollup at the end of that window.
Frames written are counted with ffprobe on every output file, against D * 25 per camera.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import CloseConnection, Ping, RejectConnection, Request, TextMessage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from tests.media.servers import RtspServer, serve_rtsp

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
FPS, GOP_S = 25, 2
SEGMENT_S = 10  # Frigate's record segments (see the docstring)
CLIP_SECONDS = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPTIONS = {"rtsp_transport": "tcp"}
PROBES = 20  # POST /collect timings per run (`--probes`)
TERMINATE_GRACE_S = 5


# ---------------------------------------------------------------------------------------- media


def make_bench_clip(path: Path, seconds: int = CLIP_SECONDS) -> Path:
    """720p25 H.264 at ~2 Mbit/s (light temporal noise so testsrc2 really needs the bits), 2 s
    GOP without B-frames, in-band SPS/PPS; AAC 64k 48 kHz mono. tests/media/clips.make_clip has no
    bitrate knob, hence this command."""
    gop = FPS * GOP_S
    args = ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error",
            "-f", "lavfi", "-i", f"testsrc2=size=1280x720:rate={FPS}:duration={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}",
            "-map", "0:v", "-map", "1:a", "-vf", "noise=alls=12:allf=t",
            "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-pix_fmt", "yuv420p",
            "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", "0",
            "-b:v", "2M", "-maxrate", "2M", "-bufsize", "2M", "-x264-params", "repeat-headers=1",
            "-c:a", "aac", "-b:a", "64k", "-ar", "48000", "-ac", "1",
            "-t", str(seconds), "-f", "matroska", str(path)]
    subprocess.run(args, check=True)
    return path


def clip_bitrate(path: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=bit_rate",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True).stdout
    return float(out.strip() or 0)


async def count_frames(files: list[Path], how: str) -> tuple[int, int]:
    """Video frames in `files` and frames missing inside them (a PTS step of more than one frame).

    `packets` reads v:0's packet timestamps (no decoding; one access unit per packet with
    `-c copy`); `frames` decodes (`ffprobe -count_frames`) and reports no gaps."""
    limiter = trio.CapacityLimiter(4)
    total = missing = 0

    async def one(f: Path) -> None:
        nonlocal total, missing
        if how == "packets":
            cmd = ["-show_entries", "packet=pts_time"]
        else:
            cmd = ["-count_frames", "-show_entries", "stream=nb_read_frames"]
        async with limiter:
            proc = await trio.run_process(
                ["ffprobe", "-v", "error", "-select_streams", "v:0", *cmd, "-of", "csv=p=0",
                 str(f)], capture_stdout=True, check=False)
        values = [v.strip().rstrip(",") for v in proc.stdout.decode().split()]
        if how == "frames":
            total += int(values[0]) if values and values[0].isdigit() else 0
            return
        times = sorted(float(v) for v in values if v not in ("", "N/A"))
        total += len(times)
        # the step between a file's first two frames is skipped: FFmpeg's RTSP demuxer moves its
        # timestamps once the first RTCP sender report arrives (a jump, not a lost frame)
        missing += sum(max(0, round((b - a) * FPS) - 1) for a, b in itertools.pairwise(times[1:]))

    async with trio.open_nursery() as nursery:
        for f in files:
            nursery.start_soon(one, f)
    return total, missing


# -------------------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a whole process (every thread, live or exited), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)


def pss_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (with few samples, p99 is the maximum)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1)]


async def terminate(proc: trio.Process, sig: int = signal.SIGTERM) -> None:
    with trio.CancelScope(shield=True):
        if proc.returncode is None:
            proc.send_signal(sig)
            with trio.move_on_after(TERMINATE_GRACE_S):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


# ---------------------------------------------------------------------------------- results


@dataclass
class Side:
    name: str
    cameras: int
    window_s: float = 0.0
    cpu_s: float = 0.0  # over the window, whole side
    pss_per_camera: float = 0.0  # bytes: marginal (collector) or mean per process (ffmpeg)
    pss_total: float = 0.0
    frames: int = 0
    missing: int = 0  # frames absent inside files (PTS steps)
    frames_expected: int = 0
    files: int = 0
    notes: list[str] = field(default_factory=list)
    post_ms: list[float] = field(default_factory=list)
    ws_ms: list[float] = field(default_factory=list)  # arrival - the segment's end_time (the cut)
    ws_media_ms: list[float] = field(default_factory=list)  # arrival - (start_time + duration)
    ws_durable_ms: list[float] = field(default_factory=list)  # event's `at` - end_time (fsync ...)
    ws_delivery_ms: list[float] = field(default_factory=list)  # arrival - the event's `at`

    @property
    def cpu_per_camera_minute(self) -> float:
        return self.cpu_s / (self.cameras * self.window_s / 60) if self.window_s else math.nan


# ------------------------------------------------------------------------------- collector


async def _drain(stream: trio.abc.ReceiveStream, lines: list[str], listening: trio.Event,
                 url: list[str]) -> None:
    buf = b""
    while chunk := await stream.receive_some(65536):
        buf += chunk
        *done, buf = buf.split(b"\n")
        for raw in done:
            line = raw.decode(errors="replace")
            if "collector.listening url=" in line and not url:
                url.append(line.split("url=", 1)[1].split()[0])
                listening.set()
            if " ERROR " in line or "Traceback" in line or "failed" in line:
                lines.append(line)


async def ws_progress_latencies(ws: str, done: trio.Event, side: Side | None = None) -> None:
    """Follow a job's JSON WebSocket until the job ends (`done`). With `side`, for each progress
    event, in ms: its arrival minus the segment's `end_time` (when the collector cut it) into
    `side.ws_ms`; minus `start_time + duration` (the segment's media end on the clock of its
    opening) into `ws_media_ms`; the event's own time (`at`: published, after the fsync) minus
    `end_time` into `ws_durable_ms`; and its arrival minus `at` (the delivery: the service and
    this machine share a clock) into `ws_delivery_ms`."""
    parts = urlsplit(ws)
    conn = WSConnection(ConnectionType.CLIENT)
    stream = await trio.open_tcp_stream(parts.hostname, parts.port)
    async with stream:
        await stream.send_all(conn.send(Request(host=parts.netloc,
                                                target=f"{parts.path}?{parts.query}")))
        text = ""
        while True:
            data = await stream.receive_some(65536)
            now = time.time()
            if not data:
                break
            conn.receive_data(data)
            for event in conn.events():
                match event:
                    case TextMessage():
                        text += event.data
                        if event.message_finished:
                            msg, text = json.loads(text), ""
                            seg = msg.get("segment") or {}
                            if (side is not None and msg.get("type") == "progress"
                                    and seg.get("end_time")):
                                side.ws_ms.append((now - seg["end_time"]) * 1000)
                                side.ws_media_ms.append(
                                    (now - seg["start_time"] - seg["duration"]) * 1000)
                                if "at" in msg:
                                    side.ws_durable_ms.append((msg["at"] - seg["end_time"]) * 1000)
                                    side.ws_delivery_ms.append((now - msg["at"]) * 1000)
                            if msg.get("type") in ("completed", "error", "interrupted"):
                                done.set()
                    case Ping():
                        await stream.send_all(conn.send(event.response()))
                    case CloseConnection():
                        done.set()
                        return
                    case RejectConnection():
                        raise RuntimeError(f"WebSocket rejected: {event.status_code}")
    done.set()


@asynccontextmanager
async def collector_process(
    tmp: Path, root: Path = ROOT, **env: str
) -> AsyncIterator[tuple[trio.Process, str, list[str]]]:
    """`python -m collector` on a free port (SQLite and data under `tmp`, our settings only), its
    output drained; yields (process, base URL, error lines); SIGTERM on the way out."""
    env = {**os.environ, "PORT": "0", "COLLECTOR_HOST": "127.0.0.1",
           "COLLECTOR_DATA_DIR": str(tmp / "collector"), "COLLECTOR_LOG_FORMAT": "plain",
           "COLLECTOR_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **env}
    for name in ("DATABASE_URL", "COLLECTOR_CONFIG_FILE", "COLLECTOR_API_TOKEN",
                 "COLLECTOR_ALLOWED_HOSTS"):
        env.pop(name, None)
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "collector"], cwd=str(root), env=env,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    errors: list[str] = []
    listening, url_box = trio.Event(), []
    try:
        async with trio.open_nursery() as nursery:
            assert proc.stdout is not None
            nursery.start_soon(_drain, proc.stdout, errors, listening, url_box)
            with trio.fail_after(30):
                await listening.wait()
            yield proc, url_box[0].replace("0.0.0.0", "127.0.0.1"), errors
            nursery.cancel_scope.cancel()
    finally:
        await terminate(proc, signal.SIGTERM)


def camera_limits(n: int) -> dict[str, str]:
    """The collector's settings for one job of `n` cameras."""
    return {"COLLECTOR_MAX_SOURCES_PER_JOB": str(max(n, 16)),
            "COLLECTOR_CAMERA_THREADS": str(max(256, 2 * n))}


def collect_body(urls: list[str], duration: float, segment_s: float, names: str = "cam"
                 ) -> dict[str, Any]:
    """`POST /collect` for `urls`, named `cam000`, `cam001`, ..."""
    return {"streams": [{"url": u, "name": f"{names}{i:03d}"} for i, u in enumerate(urls)],
            "duration": duration, "segment_seconds": segment_s, "options": OPTIONS}


async def run_collector(urls: list[str], seconds: float, warmup: float, small: int,
                        tmp: Path, probe: str, segment_s: float = SEGMENT_S,
                        probes: int = PROBES, posted_event: trio.Event | None = None) -> Side:
    """`posted_event` is set when the N-camera job is posted (`--together` starts ffmpeg then)."""
    n = len(urls)
    side = Side("collector", n, frames_expected=int(seconds * FPS) * n)
    async with collector_process(
        tmp, **camera_limits(n), COLLECTOR_MAX_CONCURRENT_JOBS=str(probes + 8),
    ) as (proc, base, errors):
        async with trio.open_nursery() as nursery:
            async with httpx.AsyncClient(base_url=base, timeout=30) as client, \
                    httpx.AsyncClient(base_url=base, timeout=30) as prober:
                await client.get("/")
                await prober.get("/")

                # 1. the PSS base: `small` cameras, sampled while they record
                small_s = max(min(warmup, 8.0) + 2, 6.0)
                r = await client.post("/collect",
                                      json=collect_body(urls[:small], small_s, segment_s))
                r.raise_for_status()
                await trio.sleep(small_s)
                pss_small = pss_bytes(proc.pid) or 0
                await wait_job(client, r.json()["job_id"], 60)

                # 2. the N cameras
                posted = time.monotonic()
                r = await client.post("/collect", json=collect_body(urls, seconds, segment_s))
                r.raise_for_status()
                if posted_event is not None:
                    posted_event.set()
                job_id = r.json()["job_id"]
                ws_done = trio.Event()
                ws = base.replace("http://", "ws://") + f"/ws/{job_id}?format=json"
                nursery.start_soon(ws_progress_latencies, ws, ws_done, side)
                t0 = posted + warmup
                t1 = posted + seconds
                await trio.sleep_until(trio.current_time() + (t0 - time.monotonic()))
                cpu0, w0 = cpu_seconds(proc.pid), time.monotonic()
                step = (t1 - t0) / (probes + 1)
                for i in range(probes):
                    await trio.sleep_until(trio.current_time() + (t0 + (i + 1) * step
                                                                  - time.monotonic()))
                    probe_body = collect_body([urls[i % n]], 0.5, segment_s, names="probe")
                    probe_body["segment_seconds"] = 0.5
                    start = time.perf_counter()
                    pr = await prober.post("/collect", json=probe_body)
                    side.post_ms.append((time.perf_counter() - start) * 1000)
                    if pr.status_code != 200:
                        side.notes.append(f"probe POST {pr.status_code}: {pr.text[:80]}")
                await trio.sleep_until(trio.current_time() + (t1 - time.monotonic()))
                cpu1, w1 = cpu_seconds(proc.pid), time.monotonic()
                pss_n = pss_bytes(proc.pid) or 0
                assert cpu0 is not None and cpu1 is not None
                side.window_s, side.cpu_s = w1 - w0, cpu1 - cpu0
                side.pss_total = pss_n
                side.pss_per_camera = (pss_n - pss_small) / (n - small) if n > small else math.nan
                side.notes.append(f"PSS {pss_small / 2**20:.1f} MiB at {small} cameras, "
                                  f"{pss_n / 2**20:.1f} MiB at {n}")
                try:
                    job = await wait_job(client, job_id, seconds + 60)
                except trio.TooSlowError:
                    side.notes.append(f"job not finished {seconds + 60:g} s after the window: "
                                      "cancelled, its finished segments counted")
                    await client.delete(f"/jobs/{job_id}")
                    job = await wait_job(client, job_id, 30)
                with trio.move_on_after(5):
                    await ws_done.wait()
                if job["status"] != "completed":
                    side.notes.append(f"job {job['status']}: {job.get('error')}")
                files = [Path(s["path"]) for src in job["sources"] for s in src["segments"]]
                recorded = sum(s["frames"] for src in job["sources"] for s in src["segments"])
                gaps = sum(len(src.get("gaps", [])) for src in job["sources"])
                if gaps:
                    side.notes.append(f"{gaps} gaps")
                side.notes.append(f"job record says {recorded} frames")
                nursery.cancel_scope.cancel()
    side.files = len(files)
    side.frames, side.missing = await count_frames(files, probe)
    side.notes += errors[:5]
    return side


async def wait_job(client: httpx.AsyncClient, job_id: str, ceiling: float) -> dict[str, Any]:
    with trio.fail_after(ceiling):
        while True:
            job = (await client.get(f"/jobs/{job_id}")).json()
            if job["status"] not in ("queued", "running"):
                return job
            await trio.sleep(1.0)  # an N-source job's full view takes ms to encode: poll gently


# ---------------------------------------------------------------------------------- ffmpeg


async def run_ffmpeg(urls: list[str], seconds: float, warmup: float, tmp: Path, probe: str,
                     segment_s: float = SEGMENT_S) -> Side:
    n = len(urls)
    side = Side("ffmpeg", n, frames_expected=int(seconds * FPS) * n)
    procs: list[trio.Process] = []
    dirs = [tmp / "ffmpeg" / f"cam{i:03d}" for i in range(n)]
    try:
        spawned = time.monotonic()
        for url, d in zip(urls, dirs, strict=False):
            d.mkdir(parents=True)
            procs.append(await trio.lowlevel.open_process(
                ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-rtsp_transport", "tcp",
                 "-i", url, "-c", "copy", "-t", f"{seconds:g}", "-f", "segment",
                 "-segment_time", f"{segment_s:g}", "-reset_timestamps", "1",
                 str(d / "out%03d.mp4")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        await trio.sleep_until(trio.current_time() + (spawned + warmup - time.monotonic()))
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        w0 = time.monotonic()
        # PSS a little before the end: an `ffmpeg -t D` whose output clock started early (RTCP
        # re-basing) has exited by `spawned + D`, and the survivors' PSS, shared by fewer
        # processes, would read high (19-29 MiB instead of ~13 at 3 cameras).
        await trio.sleep_until(trio.current_time() + (spawned + seconds - 2 - time.monotonic()))
        pss = [pss_bytes(p.pid) for p in procs]
        await trio.sleep_until(trio.current_time() + (spawned + seconds - time.monotonic()))
        cpu1 = [cpu_seconds(p.pid) for p in procs]
        w1 = time.monotonic()
        gone = sum(1 for a, b in zip(cpu0, cpu1, strict=False) if a is None or b is None)
        if gone:
            side.notes.append(f"{gone} ffmpeg processes not running through the whole window")
        side.window_s = w1 - w0
        side.cpu_s = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)
                         if a is not None and b is not None)
        alive = [p for p in pss if p]
        side.pss_total = sum(alive)
        side.pss_per_camera = side.pss_total / len(alive) if alive else math.nan
        with trio.fail_after(60):
            for p in procs:
                await p.wait()
        bad = sum(1 for p in procs if p.returncode != 0)
        if bad:
            side.notes.append(f"{bad} ffmpeg processes exited non-zero")
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
        with trio.CancelScope(shield=True):
            for p in procs:
                await p.wait()
    files = sorted(f for d in dirs for f in d.glob("out*.mp4"))
    side.files = len(files)
    side.frames, side.missing = await count_frames(files, probe)
    return side


# ------------------------------------------------------------------------------------ main


async def serve_cameras(clip: Path, cameras: int, servers: int,
                        task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
    groups = [list(range(i, cameras, servers)) for i in range(min(servers, cameras))]
    urls: list[str] = [""] * cameras
    async with trio.open_nursery() as nursery:
        for group in groups:
            paths = [f"/cam{i:03d}" for i in group]
            server: RtspServer = await nursery.start(
                partial(serve_rtsp, clip, paths=paths, shared=True, one_pipeline=True))
            for i, path in zip(group, paths, strict=False):
                urls[i] = server.url(path)
        task_status.started(urls)
        await trio.sleep_forever()


def table(rows: list[tuple[Side, Side]]) -> str:
    head = ("| N | side | CPU s / camera-min | PSS / camera MiB | frames written / served "
            "| missing in files | files | POST /collect p50 / p99 ms "
            "| WS progress from the cut p50 / p99 ms "
            "| WS progress from its publication p50 / p99 ms |\n"
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for c, f in rows:
        for s in (c, f):
            post = f"{pct(s.post_ms, 50):.1f} / {pct(s.post_ms, 99):.1f}" if s.post_ms else "—"
            wsl = f"{pct(s.ws_ms, 50):.0f} / {pct(s.ws_ms, 99):.0f}" if s.ws_ms else "—"
            wsd = (f"{pct(s.ws_delivery_ms, 50):.1f} / {pct(s.ws_delivery_ms, 99):.1f}"
                   if s.ws_delivery_ms else "—")
            memo = "marginal " if s.name == "collector" else "mean "
            lines.append(f"| {s.cameras} | {s.name} | {s.cpu_per_camera_minute:.2f} | "
                         f"{memo}{s.pss_per_camera / 2**20:.1f} | "
                         f"{s.frames} / {s.frames_expected} | {s.missing} | {s.files} | "
                         f"{post} | {wsl} | {wsd} |")
        lines.append(f"| {c.cameras} | **collector / ffmpeg** | "
                     f"**{c.cpu_per_camera_minute / f.cpu_per_camera_minute:.2f}** | "
                     f"**{c.pss_per_camera / f.pss_per_camera:.2f}** | | | | | | |")
    return "\n".join(lines)


async def beside_ffmpeg(args: argparse.Namespace, tmp: Path,
                        run_side: Callable[..., Awaitable[T]], about: str = "",
                        together: bool = False) -> tuple[T, Side]:
    """Make the clip, serve `args.cameras` paths of it, run `run_side(urls)`, then the
    ffmpeg-per-camera baseline on the same URLs (one after the other: see BENCHMARKS.md).

    With `together` (cameras.py's `--together`) both sides record at once, ffmpeg's processes
    spawned when the collector's N-camera job is posted (`run_side(urls, posted_event)`), so that
    their CPU windows are the same seconds of the machine: what other tenants take falls on both.
    """
    clip = make_bench_clip(tmp / "clip.mkv")
    print(f"clip: 1280x720 {FPS} fps, GOP {GOP_S} s, {clip_bitrate(clip) / 1e6:.2f} Mbit/s, "
          f"looped; {args.cameras} cameras on {min(args.servers, args.cameras)} servers; "
          f"D = {args.seconds:g} s, segments of {args.segment_seconds:g} s; "
          f"CPU window = [{args.warmup:g}, {args.seconds:g}] s{about}",
          flush=True)
    async with trio.open_nursery() as nursery:
        urls = await nursery.start(serve_cameras, clip, args.cameras, args.servers)
        # each side's files are ffprobe'd too, 4 at a time: allow ~1 s each on a busy 2-core box
        files = args.cameras * math.ceil(args.seconds / args.segment_seconds)
        with trio.fail_after(3 * args.seconds + 240 + files / 4):
            if together:
                side, ff = await _together(args, tmp, urls, run_side)
            else:
                side = await run_side(urls)
                await trio.sleep(2)  # let the servers' pipelines and page cache settle
                ff = await run_ffmpeg(urls, args.seconds, args.warmup, tmp, args.probe,
                                      args.segment_seconds)
        nursery.cancel_scope.cancel()
    return side, ff


async def _together(args: argparse.Namespace, tmp: Path, urls: list[str],
                    run_side: Callable[..., Awaitable[T]]) -> tuple[T, Side]:
    posted = trio.Event()
    ff: list[Side] = []

    async def baseline() -> None:
        await posted.wait()
        ff.append(await run_ffmpeg(urls, args.seconds, args.warmup, tmp, args.probe,
                                   args.segment_seconds))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(baseline)
        side = await run_side(urls, posted)
    return side, ff[0]


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-cameras-") as tmpname:
        tmp = Path(tmpname)
        coll, ff = await beside_ffmpeg(args, tmp, lambda urls, posted=None: run_collector(
            urls, args.seconds, args.warmup, args.small_cameras, tmp, args.probe,
            args.segment_seconds, args.probes, posted),
            about="; both sides at once (--together)" if args.together else "",
            together=args.together)
        rows = [(coll, ff)]
        shutil.rmtree(tmp / "collector", ignore_errors=True)
    print(table(rows))
    for s in (coll, ff):
        for note in s.notes:
            print(f"  {s.name}: {note}")
    print(f"  CPU window: collector {coll.window_s:.1f} s, ffmpeg {ff.window_s:.1f} s; "
          f"CPU in window: collector {coll.cpu_s:.2f} s, ffmpeg (sum) {ff.cpu_s:.2f} s (CPU per "
          f"camera-minute, collector / ffmpeg: "
          f"{coll.cpu_per_camera_minute / ff.cpu_per_camera_minute:.3f}); "
          f"PSS: collector {coll.pss_total / 2**20:.1f} MiB, "
          f"ffmpeg (sum) {ff.pss_total / 2**20:.1f} MiB")
    print(f"  frames counted with ffprobe ({args.probe}); "
          f"POST samples {len(coll.post_ms)}, WS samples {len(coll.ws_ms)}; "
          f"WS progress from the media end (start_time + duration) p50 / p99 "
          f"{pct(coll.ws_media_ms, 50):.0f} / {pct(coll.ws_media_ms, 99):.0f} ms; "
          f"from the cut to the event's publication (fsync, DB) "
          f"{pct(coll.ws_durable_ms, 50):.0f} / {pct(coll.ws_durable_ms, 99):.0f} ms; "
          f"run took {time.monotonic() - started:.0f} s")


def add_common_args(parser: argparse.ArgumentParser, cameras: int, help_cameras: str = "") -> None:
    """The options every camera benchmark takes (this one, opencv_baseline.py)."""
    parser.add_argument("--cameras", type=int, default=cameras, help=help_cameras or None)
    parser.add_argument("--seconds", type=float, default=40, help="D: video per camera")
    parser.add_argument("--warmup", type=float, default=None,
                        help="start of the CPU window after posting/spawning (default max(4, D/2))")
    parser.add_argument("--servers", type=int, default=10, help="rtsp_server.py processes")
    parser.add_argument("--segment-seconds", type=float, default=SEGMENT_S,
                        help="S: segment length of both sides (default: Frigate's 10 s)")
    parser.add_argument("--probe", choices=["packets", "frames"], default="packets",
                        help="ffprobe packet timestamps (fast, finds gaps) or -count_frames")


def check_common_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.warmup is None:
        args.warmup = max(4.0, args.seconds / 2)
    if not 0 < args.warmup < args.seconds - 2:
        parser.error("--seconds must exceed the warm-up by more than 2 s")
    if args.cameras < 1:
        parser.error("--cameras must be at least 1")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, cameras=10)
    parser.add_argument("--small-cameras", type=int, default=1,
                        help="cameras of the collector's PSS base job")
    parser.add_argument("--probes", type=int, default=PROBES,
                        help="POST /collect timings in the CPU window (each a 0.5 s job of one "
                             "camera already recorded, so p99 is the maximum below 100)")
    parser.add_argument("--together", action="store_true",
                        help="record with both sides at once (the servers serve 2N readers), so "
                             "that the machine's noise falls on both windows alike")
    args = parser.parse_args()
    check_common_args(parser, args)
    if not 0 < args.small_cameras < args.cameras:
        parser.error("--small-cameras must be below --cameras")
    if args.probes < 1:
        parser.error("--probes must be at least 1")
    return args

if __name__ == "__main__":
    trio.run(main, parse_args())
