"""The real process, started from the Procfile's command: serves on $PORT, drains on SIGTERM."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio

from tests.client import expected_texts, read_ws, wait_job, ws_url
from tests.media.misbehaving import serve_pausing_http
from tests.media.probe import count_frames, probe

ROOT = Path(__file__).resolve().parent.parent
LISTENING = re.compile(rb"collector\.listening url=http://[^:]+:(\d+)")


def procfile_command(kind: str = "web") -> list[str]:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name.strip() == kind:
            return shlex.split(command.strip())
    raise AssertionError(f"no {kind} process in Procfile")


class Process:
    def __init__(self, proc: trio.Process) -> None:
        self.proc, self.output = proc, b""
        self.port: int | None = None

    async def wait_listening(self) -> int:
        assert self.proc.stdout is not None
        while self.port is None:
            chunk = await self.proc.stdout.receive_some(65536)
            if not chunk:
                raise AssertionError(f"server exited before listening:\n{self.output.decode()}")
            self.output += chunk
            if m := LISTENING.search(self.output):
                self.port = int(m.group(1))
        return self.port

    async def drain_output(self) -> None:
        assert self.proc.stdout is not None
        async for chunk in self.proc.stdout:
            self.output += chunk


async def start_process(tmp_path: Path, nursery: trio.Nursery, command: list[str] | None = None,
                        **env_extra: str) -> Process:
    """The Procfile's web process (or `command`) on a free port, data under tmp_path/data; output
    collected."""
    env = {
        **os.environ,
        "PORT": "0",
        "COLLECTOR_DATA_DIR": str(tmp_path / "data"),
        "COLLECTOR_GRACEFUL_TIMEOUT_S": "5",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **env_extra,
    }
    proc = await trio.lowlevel.open_process(
        command or procfile_command(), cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    server = Process(proc)
    with trio.fail_after(20):
        await server.wait_listening()
    nursery.start_soon(server.drain_output)
    return server


@pytest.fixture
async def process(tmp_path, nursery):
    server = await start_process(tmp_path, nursery)
    yield server
    if server.proc.returncode is None:
        server.proc.kill()
    await server.proc.wait()


async def test_procfile_process_serves_the_original_api(process):
    """`POST /collect` with no body on the real process: exact WebSocket sequence, close 1000."""
    base = f"http://127.0.0.1:{process.port}"
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/")).json() == {"message": "Camera Collector API is running!"}
            job_id = (await http.post("/collect")).json()["job_id"]
        transcript = await read_ws(ws_url(base, job_id))
    assert transcript.messages == expected_texts(job_id, 5)
    assert transcript.code == 1000


async def test_a_request_cannot_forge_log_lines(process):
    """A path with an encoded line break and NUL is logged on its own line, escaped: the access
    log used to write the decoded path, so a client could add a line of its choosing."""
    base = f"http://127.0.0.1:{process.port}"
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.get("/jobs/x%0a2026-11-28 12:00:00,000 ERROR forged%00%0d")
            assert r.status_code == 404
            while b"ERROR forged" not in process.output:  # noqa: ASYNC110 (drain_output fills it)
                await trio.sleep(0.05)
            await trio.sleep(0.1)  # the rest of the line
    line = next(ln for ln in process.output.decode().splitlines() if "ERROR forged" in ln)
    assert " hypercorn.access " in line
    assert '"GET /jobs/x\\n2026-11-28 12:00:00,000 ERROR forged\\x00\\r 1.1" 404' in line
    assert b"\x00" not in process.output


async def test_sigterm_drains(process, tmp_path):
    """SIGTERM mid-job: the WebSocket closes with 1001, every segment file (including the one being
    written) is readable, the job's log says interrupted, and the process exits 0."""
    base = f"http://127.0.0.1:{process.port}"
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=base) as http:
            job_id = (
                await http.post("/collect", json={"duration": 30, "segment_seconds": 1})
            ).json()["job_id"]
        result = []

        async def watch() -> None:
            result.append(await read_ws(ws_url(base, job_id)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(3.5)
            process.proc.send_signal(signal.SIGTERM)
        code = await process.proc.wait()
    assert code == 0
    [transcript] = result
    assert transcript.code == 1001
    assert transcript.messages[0] == f"Collection started with Job ID: {job_id}"
    assert transcript.messages[1:] == [
        f"Progress: Step {k}/30" for k in range(1, len(transcript.messages))
    ]
    files = sorted((tmp_path / "data" / "jobs" / job_id).rglob("segment-*.mp4"))
    assert len(files) >= 3
    for f in files:
        assert probe(f).video is not None
        assert count_frames(f) > 0
    await trio.sleep(0.2)
    assert b"status=interrupted" in process.output


async def test_sigkill_mid_segment_loses_at_most_about_a_second(process, tmp_path):
    """SIGKILL while a segment is being written, in each format: every file on disk opens in ffprobe
    and holds all but about one second of the video recorded until the kill."""
    base = f"http://127.0.0.1:{process.port}"
    with trio.fail_after(30):
        async with httpx.AsyncClient(base_url=base) as http:
            ids = {}
            for fmt in ("mp4", "mkv", "ts"):
                r = await http.post(
                    "/collect", json={"duration": 60, "segment_seconds": 30, "format": fmt}
                )
                ids[fmt] = r.json()["job_id"]
        started = trio.current_time()
        await trio.sleep(6.5)
        process.proc.kill()
        elapsed = trio.current_time() - started
        await process.proc.wait()
    for fmt, job_id in ids.items():
        [path] = (tmp_path / "data" / "jobs" / job_id).rglob(f"segment-*.{fmt}")
        frames = count_frames(path)  # raises if ffprobe cannot read the file
        # the demo camera makes 10 frames/s; allow 1 s of fragment + startup and batch latency
        assert frames >= (elapsed - 1.6) * 10, f"{fmt}: {frames} frames after {elapsed:.1f} s"
        assert probe(path).video is not None


async def test_honcho_runs_the_procfile_with_json_logs(tmp_path):
    """`honcho start web` with the repo's Procfile: $PORT honoured, every stdout line a JSON object
    with the password-free event fields, including one summary line for the finished job."""
    import json as jsonlib

    env = {
        **os.environ,
        "COLLECTOR_DATA_DIR": str(tmp_path / "data"),
        "COLLECTOR_LOG_FORMAT": "json",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONUNBUFFERED": "1",
    }
    port = 20000 + os.getpid() % 20000
    proc = await trio.lowlevel.open_process(
        [str(Path(sys.executable).parent / "honcho"), "-f", str(ROOT / "Procfile"),
         "-d", str(tmp_path), "--no-colour", "start", "-p", str(port), "web"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    server = Process(proc)
    try:
        with trio.fail_after(40):
            assert await server.wait_listening() == port
            base = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient(base_url=base) as http:
                job_id = (
                    await http.post("/collect", json={"duration": 1, "segment_seconds": 1})
                ).json()["job_id"]
            await read_ws(ws_url(base, job_id))
            proc.send_signal(signal.SIGTERM)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(server.drain_output)
                await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
    lines = re.findall(r"web\.1\s*\| (.*)", server.output.decode())
    records = [jsonlib.loads(line) for line in lines if line]
    assert records and all({"time", "level", "logger", "message"} <= set(r) for r in records)
    [summary] = [r for r in records if r.get("event") == "job.end"]
    assert summary["job"] == job_id and summary["status"] == "completed"


# `python -m collector` with a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored): a write that crosses
# it is refused by the kernel (EFBIG), as one on a full disk is (ENOSPC).
SIZE_LIMITED = ("import resource, runpy, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
                "resource.setrlimit(resource.RLIMIT_FSIZE, ({}, resource.RLIM_INFINITY)); "
                "runpy.run_module('collector', run_name='__main__', alter_sys=True)")


async def test_a_full_disk_fails_only_the_source_that_hit_it(tmp_path, nursery, media_ts):
    """Two jobs record one HTTP file through one camera session (its reading thread muxes for
    both). One job's 10 s segments cross the process's file size limit and its open segment
    cannot be finished either: that job fails with the disk's error, the other completes with
    every segment readable, and the process keeps serving. (The failure to finish the segment
    was raised from the job's cleanup and crashed the process, and every other job with it.)"""
    server = await start_process(tmp_path, nursery,
                                 [sys.executable, "-c", SIZE_LIMITED.format(300_000)])
    base = f"http://127.0.0.1:{server.port}"
    size = media_ts.stat().st_size
    gate = trio.Event()  # the file is held until both jobs have joined the camera
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as servers, httpx.AsyncClient(base_url=base) as http:
                port = await servers.start(serve_pausing_http, media_ts, [(size // 20, gate)])
                url = f"http://127.0.0.1:{port}/clip.ts"
                ids = [(await http.post("/collect", json={
                    "streams": [url], "duration": 10, "segment_seconds": seconds,
                })).json()["job_id"] for seconds in (2, 10)]  # ~120 KiB and ~600 KiB segments
                while True:  # both jobs have joined the camera
                    metrics = (await http.get("/metrics")).text
                    if "camera_collector_camera_subscribers 2.0" in metrics:
                        break
                    await trio.sleep(0.02)
                gate.set()
                good, full = [await wait_job(http, job_id) for job_id in ids]
                assert (await http.get("/")).status_code == 200
                metrics = (await http.get("/metrics")).text
                servers.cancel_scope.cancel()
    finally:
        server.proc.kill()
        await server.proc.wait()
    assert full["status"] == "failed"
    assert full["error"].startswith("source 'source-1': cannot write segments: "), full["error"]
    assert "File too large" in full["error"], full["error"]
    assert good["status"] == "completed"
    segments = good["sources"][0]["segments"]
    assert len(segments) == 5
    for seg in segments:
        assert count_frames(Path(seg["path"])) == seg["frames"] == 50
    assert "camera_collector_upstream_sessions_opened_total 1.0" in metrics
