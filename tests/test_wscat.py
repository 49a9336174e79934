"""The seed's own WebSocket client, `wscat` (npm), against a real server: the exact text sequence.

wscat exits at EOF on its stdin, so the tests keep a pipe to it open until the server closes.
Where wscat is missing the tests skip, visibly; under CI (which installs it through
scripts/system-packages) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import trio

from tests.client import expected_texts, ws_url


@pytest.fixture
def wscat() -> str:
    """wscat's path; requested before `collector`, so a skip keeps its reason."""
    path = shutil.which("wscat")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("wscat is not installed; scripts/system-packages installs it with npm")
        pytest.skip("wscat is not installed (npm install -g wscat); CI requires it")
    return path


async def run_wscat(wscat: str, url: str) -> tuple[int, list[str], str]:
    """wscat's exit code, stdout lines and stderr; stdin stays open until wscat exits by itself."""
    process = await trio.lowlevel.open_process(
        [wscat, "-c", url],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    assert process.stdin and process.stdout and process.stderr
    out, err = bytearray(), bytearray()

    async def drain(stream: trio.abc.ReceiveStream, into: bytearray) -> None:
        while chunk := await stream.receive_some(65536):
            into += chunk

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, process.stdout, out)
            nursery.start_soon(drain, process.stderr, err)
            code = await process.wait()
    finally:
        if process.returncode is None:  # the test timed out: end the one process we started
            process.kill()
        with trio.CancelScope(shield=True), trio.move_on_after(5):
            await process.wait()
        await process.stdin.aclose()
    return code, out.decode().splitlines(), err.decode()


async def test_wscat_receives_the_exact_sequence_live(wscat, collector, client):
    """wscat, connected while a job runs, prints exactly the seed's messages, then exits 0 when the
    server closes the connection."""
    with trio.fail_after(30):
        job_id = (await client.post("/collect", json={"duration": 2, "segment_seconds": 1})
                  ).json()["job_id"]
        code, lines, err = await run_wscat(wscat, ws_url(collector.url, job_id))
    assert lines == expected_texts(job_id, 2), err
    assert code == 0, err
    job = (await client.get(f"/jobs/{job_id}")).json()
    assert job["status"] == "completed"


async def test_wscat_unknown_job(wscat, collector):
    """An unknown job id gets the seed's error text and a normal close."""
    with trio.fail_after(15):
        code, lines, err = await run_wscat(wscat, ws_url(collector.url, "no-such-job"))
    assert lines == ["Error with Job ID no-such-job: job not found"], err
    assert code == 0, err
