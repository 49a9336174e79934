"""Issue 7's optional baseline (c): an OpenCV VideoCapture/VideoWriter recorder per camera, beside
(b) one `ffmpeg -c copy` per camera, on the same streams in the same run.

    .venv/bin/python bench/opencv_baseline.py [--cameras 3] [--seconds 40] [--probe packets|frames]

Needs OpenCV (`pip install -e '.[bench]'`, i.e. opencv-python-headless); says so and exits 2 if
`import cv2` fails.

* The clip and the servers are bench/cameras.py's: a generated 720p25 H.264 (~2 Mbit/s, 2 s GOP,
  no B-frames) + AAC clip looped without re-encoding by `tests/media/rtsp_server.py --shared
  --one-pipeline` processes serving K mount paths (never measured).
* (c) K `python bench/opencv_recorder.py URL DIR D` processes, one per camera: cv2.VideoCapture
  (CAP_FFMPEG, RTSP over TCP via OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp) decodes every
  frame to BGR and cv2.VideoWriter re-encodes it ('mp4v' into .mp4, a new file every 50 frames =
  2 s), D x 25 frames each (as `ffmpeg -t D` stops after D s of output). Video only: OpenCV
  neither reads nor writes audio.
* (b) K `ffmpeg -rtsp_transport tcp -i URL -c copy -t D -f segment ...` processes, exactly
  bench/cameras.py's run_ffmpeg.

The two sides run one after the other (OpenCV first), never at once, on the same URLs. CPU is the
utime+stime delta (/proc/<pid>/stat, all threads) over the same steady window as bench/cameras.py
([warm-up, D] s after the processes are spawned), summed over the processes, per camera and per
minute of wall clock; PSS is read from /proc/<pid>/smaps_rollup at the end of that window, the
mean per process. Frames written are counted with ffprobe in every output file, against D x 25
per camera. "missing" is, for ffmpeg, the PTS steps of more than a frame inside its files; for
OpenCV, whose writer numbers frames itself, the steps in the source timestamps
(CAP_PROP_POS_MSEC) of the frames the capture returned (a step back or of more than a GOP is a
clock jump, printed apart). Per recorder it also prints when its first frame came and the rate it
read frames at (above 25 fps: catching up on what the capture buffered while opening).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.cameras import (
    FPS,
    GOP_S,
    Side,
    add_common_args,
    beside_ffmpeg,
    check_common_args,
    count_frames,
    cpu_seconds,
    pss_bytes,
    terminate,
)

RECORDER = Path(__file__).with_name("opencv_recorder.py")
CAPTURE_OPTIONS = "rtsp_transport;tcp"
EXIT_CEILING_S = 30  # after the window: the recorders' own deadline is D + 15 s from their start
CORE_PCT_ISSUE = 19.0  # issue 7: "an OpenCV decode/re-encode recorder costs about 19% of a core"
CV2_MISSING = ("OpenCV (cv2) is not importable by {python}:\n  {error}\n"
               "This benchmark needs it; install the bench extra into the venv:\n"
               "  .venv/bin/pip install -e '.[bench]'   (or: .venv/bin/pip install "
               "opencv-python-headless)")


def opencv_version() -> str:
    """cv2's version and the libavcodec inside it, checked with the interpreter the recorders use;
    exits 2 with a clear message when cv2 is missing."""
    probe = ("import cv2, re; info = cv2.getBuildInformation(); "
             "m = re.search(r'avcodec:\\s+YES \\(([^)]*)\\)', info); "
             "print(cv2.__version__, m.group(1) if m else '?')")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines() or ["(no output)"]
        print(CV2_MISSING.format(python=sys.executable, error=lines[-1]), file=sys.stderr)
        sys.exit(2)
    version, avcodec = proc.stdout.split()
    return f"OpenCV {version} (its own libavcodec {avcodec})"


def threads(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def log_file(folder: Path) -> BinaryIO:
    """A recorder's output folder, made, and its stderr.log opened for the child to inherit (a
    few files before the clock starts: no need to leave the event loop for them)."""
    folder.mkdir(parents=True)
    return (folder / "stderr.log").open("wb")


async def run_opencv(urls: list[str], seconds: float, warmup: float, tmp: Path,
                     probe: str) -> tuple[Side, list[dict[str, Any]]]:
    """K recorder processes, measured like run_ffmpeg measures ffmpeg's; also each one's
    stats.json (frames, when the first and last were read, why it stopped)."""
    n = len(urls)
    side = Side("OpenCV", n, frames_expected=int(seconds * FPS) * n)
    env = {**os.environ, "OPENCV_FFMPEG_CAPTURE_OPTIONS": CAPTURE_OPTIONS}
    dirs = [tmp / "opencv" / f"cam{i:03d}" for i in range(n)]
    procs: list[trio.Process] = []
    try:
        spawned = time.monotonic()
        for url, d in zip(urls, dirs, strict=True):
            with log_file(d) as log:
                procs.append(await trio.lowlevel.open_process(
                    [sys.executable, str(RECORDER), url, str(d), f"{seconds:g}"], env=env,
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT))
        await trio.sleep_until(trio.current_time() + (spawned + warmup - time.monotonic()))
        cpu0 = [cpu_seconds(p.pid) for p in procs]
        w0 = time.monotonic()
        await trio.sleep_until(trio.current_time() + (spawned + seconds - time.monotonic()))
        cpu1 = [cpu_seconds(p.pid) for p in procs]
        w1 = time.monotonic()
        pss = [pss_bytes(p.pid) for p in procs]
        nthreads = [threads(p.pid) for p in procs]
        gone = sum(1 for a, b in zip(cpu0, cpu1, strict=True) if a is None or b is None)
        if gone:
            side.notes.append(f"{gone} recorders not running through the whole window")
        side.window_s = w1 - w0
        side.cpu_s = sum(b - a for a, b in zip(cpu0, cpu1, strict=True)
                         if a is not None and b is not None)
        alive = [p for p in pss if p]
        side.pss_total = sum(alive)
        side.pss_per_camera = side.pss_total / len(alive) if alive else float("nan")
        side.notes.append(f"threads per recorder at the end of the window: {nthreads}")
        with trio.move_on_after(EXIT_CEILING_S) as waited:
            for p in procs:
                await p.wait()
        if waited.cancelled_caught:
            side.notes.append(f"recorders still running {EXIT_CEILING_S} s after the window: "
                              "stopped with SIGTERM")
    finally:
        with trio.CancelScope(shield=True):
            for p in procs:
                await terminate(p, signal.SIGTERM)
    bad = sum(1 for p in procs if p.returncode != 0)
    if bad:
        side.notes.append(f"{bad} recorders exited non-zero")
    stats = []
    for d in dirs:
        try:
            stats.append(json.loads((d / "stats.json").read_text()))
        except (OSError, ValueError):
            stats.append({})
        log = (d / "stderr.log").read_text(errors="replace").strip().splitlines()
        if log:
            side.notes.append(f"{d.name} stderr ({len(log)} lines): {log[0][:120]}")
    files = sorted(f for d in dirs for f in d.glob("seg*.mp4"))
    side.files = len(files)
    # the writer numbers frames itself, so a PTS step in its files never shows a lost frame: what
    # the capture skipped is read from the source timestamps the recorder kept instead
    side.frames, _ = await count_frames(files, probe)
    side.missing = sum(source_gaps(s.get("pos_ms", []))[0] for s in stats)
    side.notes.append(f"{sum(f.stat().st_size for f in files) / n / 2**20:.1f} MiB written "
                      "per camera")
    return side, stats


def source_gaps(pos_ms: list[float]) -> tuple[int, list[float]]:
    """(frames missing, clock jumps in ms) in a capture's source timestamps: a step of k frame
    intervals is k - 1 missing frames; a step of zero or back (OpenCV gives its first two frames
    0 ms; FFmpeg's RTSP demuxer re-bases its clock on the first RTCP sender report), or forward by
    more than a GOP, is a jump of the clock, not a loss."""
    missing, jumps = 0, []
    for a, b in itertools.pairwise(pos_ms):
        steps = round((b - a) * FPS / 1000)
        if steps <= 0 or steps > GOP_S * FPS:
            jumps.append(round(b - a, 1))
        else:
            missing += steps - 1
    return missing, jumps


def describe(stats: list[dict[str, Any]]) -> list[str]:
    """Per recorder: first frame after spawn, the rate frames were read at, why it stopped."""
    out = []
    for i, s in enumerate(stats):
        if not s:
            out.append(f"cam{i:03d}: no stats.json")
            continue
        first, last, frames = s.get("first_frame_s"), s.get("last_frame_s"), s.get("frames", 0)
        rate = (frames - 1) / (last - first) if first is not None and last and last > first \
            else float("nan")
        first_txt = f"{first:.2f} s" if first is not None else "never"
        missing, jumps = source_gaps(s.get("pos_ms", []))
        out.append(f"cam{i:03d}: {frames} frames, first {first_txt} after spawn, "
                   f"read at {rate:.2f} fps, stopped by {s.get('stopped_by')}; source "
                   f"timestamps: {missing} frames skipped, clock jumps {jumps} ms")
    return out


def pss_sampled(side: Side) -> int:
    """How many processes the side's mean PSS is over: those still running at the end of the
    window (a process gone by then, like an `ffmpeg -t D` that got its first key frame early and
    finished its D s of output before D s of wall clock, has no PSS left to read)."""
    per = side.pss_per_camera
    return round(side.pss_total / per) if per and per == per else 0


def pss_cell(side: Side) -> str:
    sampled = pss_sampled(side)
    mean = f"{side.pss_per_camera / 2**20:.1f}"
    return mean if sampled == side.cameras else f"{mean} ({sampled} of {side.cameras})"


def table(cameras: int, cv: Side, ff: Side) -> str:
    lines = ["| K | side | CPU s / camera-min | % of a core / camera | PSS / process MiB "
             "| frames written / served | missing | files |",
             "|---:|---|---:|---:|---:|---:|---:|---:|"]
    for s in (cv, ff):
        lines.append(f"| {cameras} | {s.name} | {s.cpu_per_camera_minute:.2f} | "
                     f"{s.cpu_per_camera_minute / 60 * 100:.1f} | "
                     f"{pss_cell(s)} | {s.frames} / {s.frames_expected} | "
                     f"{s.missing} | {s.files} |")
    lines.append(f"| {cameras} | **OpenCV / ffmpeg** | "
                 f"**{cv.cpu_per_camera_minute / ff.cpu_per_camera_minute:.1f}** | | "
                 f"**{cv.pss_per_camera / ff.pss_per_camera:.2f}** | | | |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    started = time.monotonic()
    version = opencv_version()
    with tempfile.TemporaryDirectory(prefix="bench-opencv-") as tmpname:
        tmp = Path(tmpname)
        (cv, stats), ff = await beside_ffmpeg(args, tmp, lambda urls: run_opencv(
            urls, args.seconds, args.warmup, tmp, args.probe), about=f"; {version}")
    print(table(args.cameras, cv, ff))
    for line in describe(stats):
        print(f"  OpenCV: {line}")
    for s in (cv, ff):
        for note in s.notes:
            print(f"  {s.name}: {note}")
    for s in (cv, ff):
        if pss_sampled(s) < s.cameras:
            print(f"  {s.name}: PSS is the mean of the {pss_sampled(s)} of {s.cameras} processes "
                  "still running at the end of the window (the others had finished; their CPU "
                  "counts up to their exit); a lone process shares its libraries with fewer "
                  "others, so its PSS is higher")
    pct = cv.cpu_per_camera_minute / 60 * 100
    print(f"  CPU window: OpenCV {cv.window_s:.1f} s, ffmpeg {ff.window_s:.1f} s; "
          f"CPU in window (sum): OpenCV {cv.cpu_s:.1f} s, ffmpeg {ff.cpu_s:.1f} s; "
          f"PSS (sum): OpenCV {cv.pss_total / 2**20:.1f} MiB, "
          f"ffmpeg {ff.pss_total / 2**20:.1f} MiB")
    print(f"  OpenCV per camera: {pct:.1f}% of a core (issue 7: about {CORE_PCT_ISSUE:g}%); "
          f"frames counted with ffprobe ({args.probe}); "
          f"run took {time.monotonic() - started:.0f} s")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser, cameras=3, help_cameras="K: cameras, one recorder each")
    args = parser.parse_args()
    check_common_args(parser, args)
    return args

if __name__ == "__main__":
    trio.run(main, parse_args())
