"""`camera-collector collect|jobs|watch` run as real subprocesses against a real server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import trio

from tests.client import wait_job

ROOT = Path(__file__).resolve().parent.parent


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("COLLECTOR_URL", "COLLECTOR_API_TOKEN")}
    env["COLUMNS"] = "200"
    return env


async def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """`python -m collector ARGS` with stdout and stderr captured; never raises on its exit code."""
    return await trio.run_process(
        [sys.executable, "-m", "collector", *args], cwd=ROOT, env=cli_env(), stdin=b"",
        capture_stdout=True, capture_stderr=True, check=False,
    )


async def read_all(stream: trio.abc.ReceiveStream) -> str:
    data = bytearray()
    async with stream:
        while chunk := await stream.receive_some(65536):
            data += chunk
    return data.decode()


def text(done: subprocess.CompletedProcess[bytes]) -> tuple[list[str], str]:
    return done.stdout.decode().splitlines(), done.stderr.decode()


async def test_collect_demo_prints_progress_and_segment_files(collector, client):
    """A completed job exits 0, shows every step as it happens, and prints exactly its segment
    files (one path a line, on stdout), which exist on disk."""
    with trio.fail_after(60):
        done = await cli("collect", "demo://testsrc", "--duration", "2", "--segment-seconds", "1",
                         "--server", collector.url)
    lines, err = text(done)
    assert done.returncode == 0, err
    assert "Progress: Step 1/2" in err and "Progress: Step 2/2" in err
    [job_line] = [line for line in err.splitlines() if line.endswith(" completed")]
    job_id = job_line.split()[1]
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed"
    paths = [seg["path"] for seg in job["sources"][0]["segments"]]
    assert lines == paths and len(paths) == 2
    assert all(p.endswith(".mp4") for p in paths)
    assert all([await trio.Path(p).is_file() for p in paths])


async def test_collect_failing_source_exits_1(collector):
    """A source that cannot be opened fails the job after one attempt: exit 1, the reason shown,
    no segment listed."""
    with trio.fail_after(60):
        done = await cli("collect", "rtsp://127.0.0.1:9/x", "--retry-attempts", "1",
                         "--duration", "2", "--server", collector.url)
    lines, err = text(done)
    assert done.returncode == 1, err
    assert lines == []
    assert "failed after 1 attempts" in err and " failed: " in err


async def test_refused_requests_and_unreachable_servers_exit_2(collector):
    """A request the server refuses (400), bad arguments, and no server at all: exit 2, with
    the problem named on stderr."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    closed_port = listener.getsockname()[1]
    listener.close()
    with trio.fail_after(60):
        refused = await cli("collect", "ftp://example.com/x", "--server", collector.url)
        bad_arg = await cli("collect", "demo://testsrc", "--duration", "-1",
                            "--server", collector.url)
        no_server = await cli("jobs", "--server", f"http://127.0.0.1:{closed_port}")
        no_job = await cli("watch", "no-such-job", "--server", collector.url)
    assert refused.returncode == 2 and "streams[0].url" in text(refused)[1]
    assert bad_arg.returncode == 2 and "--duration" in text(bad_arg)[1]
    assert no_server.returncode == 2 and "cannot reach the collector" in text(no_server)[1]
    assert no_job.returncode == 2 and "404 job not found" in text(no_job)[1]


async def test_jobs_table_and_watch(collector, client):
    """`jobs` lists a finished job with its status and progress; `watch` replays it and exits 0."""
    with trio.fail_after(60):
        job_id = (await client.post("/collect", json={"duration": 1, "segment_seconds": 1})
                  ).json()["job_id"]
        watched = await cli("watch", job_id, "--server", collector.url)
        await wait_job(client, job_id)
        listed = await cli("jobs", "--server", collector.url)
    assert watched.returncode == 0, text(watched)[1]
    assert f"Collection completed for Job ID: {job_id}" in text(watched)[1]
    assert len(text(watched)[0]) == 1
    lines, err = text(listed)
    assert listed.returncode == 0, err
    assert lines[0].split()[:3] == ["JOB", "ID", "STATUS"]
    assert lines[1].split()[:3] == [job_id, "completed", "1/1"]


async def test_ctrl_c_cancels_the_job_it_started(collector, client):
    """SIGINT during `collect` cancels the job (its finished segments stay listed) and exits 1."""
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "collector", "collect", "demo://testsrc", "--duration", "30",
             "--segment-seconds", "1", "--server", collector.url],
            cwd=ROOT, env=cli_env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            while True:  # until the job has recorded a segment
                jobs = (await client.get("/jobs")).json()["jobs"]
                if jobs and jobs[0]["progress"]["step"] >= 1:
                    break
                await trio.sleep(0.1)
            process.send_signal(signal.SIGINT)
            code = await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await process.wait()
        assert process.stdout and process.stderr
        out, err = await read_all(process.stdout), await read_all(process.stderr)
        job = (await client.get(f"/jobs/{jobs[0]['job_id']}")).json()
    assert code == 1, err
    assert job["status"] == "cancelled"
    assert "cancelled" in err
    assert out.splitlines() == [s["path"] for s in job["sources"][0]["segments"]]


async def test_token_is_sent_over_http_and_websocket(settings, nursery):
    """Against a server with COLLECTOR_API_TOKEN, `collect --token` works end to end (HTTP and
    the WebSocket); without the token the request is refused with exit 2."""
    import dataclasses
    import functools

    from collector.server import serve

    stop = trio.Event()
    secured = dataclasses.replace(settings, api_token="s3cret-token")
    running = await nursery.start(functools.partial(serve, secured, stop=stop))
    try:
        with trio.fail_after(60):
            ok = await cli("collect", "demo://testsrc", "--duration", "1", "--segment-seconds", "1",
                           "--server", running.url, "--token", "s3cret-token")
            refused = await cli("jobs", "--server", running.url)
    finally:
        stop.set()
    assert ok.returncode == 0, text(ok)[1]
    assert len(text(ok)[0]) == 1
    assert refused.returncode == 2 and "401" in text(refused)[1]
