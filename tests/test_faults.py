"""Sources that fail: each failure is detected, retried per policy and reported with its reason."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

import pytest
import trio

from collector.errors import SourceEnded, SourceError
from collector.media.pyav_source import PyAVOpener
from tests.client import expected_texts, read_ws, wait_job, ws_url
from tests.media.misbehaving import (
    serve_file_http,
    serve_garbage,
    serve_silent,
    serve_stalling_http,
)
from tests.media.probe import count_frames
from tests.media.servers import serve_http, serve_rtsp
from tests.media.sink import CountingSink

FAST_RETRY = {"max_attempts": 2, "initial_backoff": 0.2, "max_backoff": 0.5}


@pytest.fixture
def settings(tmp_path):
    """Stall watchdog at 2 s, FFmpeg socket timeouts at 4 s: the watchdog must fire first."""
    from collector.config import load_settings

    return load_settings(
        {}, host="127.0.0.1", port=0, data_dir=tmp_path / "data",
        stall_timeout_s=2.0, io_timeout_s=4.0,
    )


async def collect_one(client, url: str, **extra) -> dict:
    body = {"streams": [url], "duration": 4, "segment_seconds": 2, "retry": FAST_RETRY, **extra}
    r = await client.post("/collect", json=body)
    assert r.status_code == 200, r.text
    return await wait_job(client, r.json()["job_id"])


async def test_stall_watchdog_fires_while_connection_stays_open(collector, client, media_ts):
    """An HTTP source that sends 7 s of video at once and then goes silent on an open connection:
    the watchdog (2 s) ends each session; after the policy's 2 attempts the job fails with `stall`,
    and the video recorded before the stall is in readable segments."""
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_stalling_http, media_ts, 500_000)  # about 7 s of video
        started = time.monotonic()
        with trio.fail_after(30):
            job = await collect_one(client, f"http://127.0.0.1:{port}/clip.ts", duration=20)
        elapsed = time.monotonic() - started
        servers.cancel_scope.cancel()
    assert job["status"] == "failed"
    [source] = job["sources"]
    assert "failed after 2 attempts" in job["error"] and "stalled" in job["error"]
    assert [g["reason"] for g in source["gaps"]] == ["stall", "stall"]
    assert elapsed < 9  # two 2 s stalls and a backoff, not FFmpeg's 4 s timeouts
    assert source["segments"], "the video before the stall was recorded"
    for seg in source["segments"]:
        assert count_frames(Path(seg["path"])) == seg["frames"]
        assert seg["end_reason"] in ("boundary", "discontinuity", "stopped")


@pytest.mark.parametrize("ahead", [False, True], ids=["direct", "read-ahead"])
async def test_ffmpeg_read_timeout_fires(media_ts, read_ahead, caplog, ahead):
    """FFmpeg's own rw_timeout (set from COLLECTOR_IO_TIMEOUT_S) ends a silent HTTP read, also
    one read ahead through FFmpeg's `async` protocol (the server says 100 MB: a large file)."""
    read_ahead(ahead)
    opener = PyAVOpener(trio.CapacityLimiter(2), io_timeout_s=1.5)
    got = CountingSink()
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_stalling_http, media_ts, 120_000)
        started = time.monotonic()
        with trio.fail_after(10), pytest.raises(SourceError) as info:
            await opener.run(f"http://127.0.0.1:{port}/clip.ts", {}, got)
        servers.cancel_scope.cancel()
    assert got.sessions == 1 and got.count > 0
    assert info.value.reason == "timeout"
    assert time.monotonic() - started < 6  # the open (and reopen), then 1.5 s of silence
    assert ("source.read_ahead " in caplog.text) is ahead


@pytest.mark.parametrize("kind", ["ts", "hls", "mjpeg"])
async def test_only_files_of_a_format_read_from_one_url_are_read_ahead(media_clip, media_ts,
                                                                       media_hls, tmp_path,
                                                                       read_ahead, caplog, kind):
    """With every file large enough: MPEG-TS over HTTP is read ahead, and read whole; so is a
    VOD HLS playlist (its segments fetched by hls_vod), but not MJPEG (a live camera format,
    whose servers may announce any Content-Length; FFmpeg's demuxer calls the end of one
    invalid data, as for a camera that goes away)."""
    read_ahead(True)
    path = {"ts": media_ts, "hls": media_hls, "mjpeg": tmp_path / "cam.mjpg"}[kind]
    if kind == "mjpeg":
        await trio.run_process(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                                "testsrc2=size=320x240:rate=10:duration=2", "-c:v", "mjpeg",
                                "-f", "mpjpeg", str(path)])
    got = CountingSink()
    async with trio.open_nursery() as servers:
        if kind == "mjpeg":  # as a camera says it: multipart, here with a length
            port = await servers.start(partial(
                serve_file_http, path, "multipart/x-mixed-replace;boundary=ffmpeg"))
            url = f"http://127.0.0.1:{port}/cam.mjpg"
        else:
            url = (await servers.start(serve_http, path.parent)).url(path)
        with trio.fail_after(20), pytest.raises(SourceError) as info:
            await PyAVOpener(trio.CapacityLimiter(2)).run(url, {}, got)
        servers.cancel_scope.cancel()
    assert got.sessions == 1
    assert (isinstance(info.value, SourceEnded) and info.value.finished) or kind == "mjpeg"
    if kind == "ts":
        assert "source.read_ahead url=" in caplog.text
    elif kind == "hls":
        segments = media_hls.read_text().count("#EXTINF")
        assert f"source.read_ahead url={url} segments={segments}\n" in caplog.text
    else:  # not even tried
        assert "source.read_ahead" not in caplog.text
    assert got.video == {"ts": media_clip.frames, "hls": media_clip.frames, "mjpeg": 20}[kind]


@pytest.mark.parametrize("ahead", [False, True], ids=["direct", "read-ahead"])
async def test_a_file_cut_short_whose_rest_is_refused_has_not_ended(media_clip, media_ts,
                                                                     read_ahead, caplog, ahead):
    """A server that takes byte ranges cuts the file at 40 % and answers the request for the
    rest with 503. FFmpeg ends such a read as cleanly as a whole file; read directly, the size
    turns unknown, but through the read-ahead it stays, and the session said the file had ended
    (the job then fails at once, "a file is read once", instead of reading it again). Both ways
    it is a stream that ended, not the file."""
    from tests.media.misbehaving import serve_breaking_http

    read_ahead(ahead)
    got = CountingSink()
    async with trio.open_nursery() as servers:
        server = await servers.start(partial(serve_breaking_http, media_ts,
                                             media_ts.stat().st_size * 2 // 5, True,
                                             refuse_resume=True))
        with trio.fail_after(20), pytest.raises(SourceEnded) as info:
            await PyAVOpener(trio.CapacityLimiter(2)).run(
                f"http://127.0.0.1:{server.port}/clip.ts", {}, got)
        servers.cancel_scope.cancel()
    assert ("source.read_ahead url=" in caplog.text) is ahead
    assert not info.value.finished, info.value
    assert 0 < got.video < media_clip.frames * 0.6


async def test_a_second_connection_held_silent_falls_back_quickly(media_clip, media_ts,
                                                                  read_ahead, caplog):
    """A server that answers the first connection and holds the second without a word: the
    read-ahead's open gives up after 2 s (not FFmpeg's 10 s I/O timeout, which would be the
    camera's stall watchdog's too), and the first connection is read, whole."""
    read_ahead(True)
    got = CountingSink()
    async with trio.open_nursery() as servers:
        port = await servers.start(partial(serve_file_http, media_ts, answers=1, silent=True))
        started = time.monotonic()
        with trio.fail_after(20), pytest.raises(SourceEnded) as info:
            await PyAVOpener(trio.CapacityLimiter(2), io_timeout_s=10).run(
                f"http://127.0.0.1:{port}/clip.ts", {}, got)
        elapsed = time.monotonic() - started
        servers.cancel_scope.cancel()
    assert "source.read_ahead_failed" in caplog.text
    assert info.value.finished and got.video == media_clip.frames
    assert 2 <= elapsed < 5, elapsed


async def test_a_file_that_cannot_be_opened_again_is_read_without_read_ahead(media_ts,
                                                                             read_ahead, caplog):
    """A server that answers one connection only: the second open, for the read-ahead, fails,
    and the file is read from the first one, from its start, all of it."""
    read_ahead(True)
    whole, once = CountingSink(), CountingSink()
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, media_ts.parent)
        with trio.fail_after(20), pytest.raises(SourceEnded):
            await PyAVOpener(trio.CapacityLimiter(2)).run(http.url(media_ts), {}, whole)
        port = await servers.start(partial(serve_file_http, media_ts, answers=1))
        with trio.fail_after(20), pytest.raises(SourceEnded) as info:
            await PyAVOpener(trio.CapacityLimiter(2)).run(
                f"http://127.0.0.1:{port}/clip.ts", {}, once)
        servers.cancel_scope.cancel()
    assert info.value.finished
    assert "source.read_ahead url=" in caplog.text  # the whole file was read ahead
    assert "source.read_ahead_failed" in caplog.text and "5XX" in caplog.text
    assert once.sessions == 1 and once.count == whole.count > 0


async def test_ffmpeg_rtsp_open_timeout_fires():
    """FFmpeg's RTSP `timeout` ends an open against a server that accepts but never answers."""
    opener = PyAVOpener(trio.CapacityLimiter(2), io_timeout_s=1.5)
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_silent)
        start = time.monotonic()
        with trio.fail_after(10), pytest.raises(SourceError) as info:
            await opener.run(f"rtsp://127.0.0.1:{port}/cam", {}, CountingSink())
        servers.cancel_scope.cancel()
    assert time.monotonic() - start < 6
    assert info.value.reason == "timeout"


async def test_reading_a_file_again_up_to_its_break_is_not_a_stall(collector, client, media_ts):
    """A file whose connection broke at a server without byte ranges is read again from its
    start, and what the job has is skipped: nothing is handed over until the break point. At a
    server slower than the stall watchdog (2 s) up to there, that was taken for a stall, and
    every session stalled at the same place until the source failed; reading counts now."""
    from tests.media.misbehaving import serve_breaking_http

    size = media_ts.stat().st_size
    break_at = size * 2 // 5
    async with trio.open_nursery() as servers:
        server = await servers.start(partial(serve_breaking_http, media_ts, break_at, False,
                                             rate=break_at / 3))  # 3 s up to the break
        with trio.fail_after(60):
            job = await collect_one(client, f"http://127.0.0.1:{server.port}/clip.ts",
                                    duration=10, retry={"initial_backoff": 0.1})
        servers.cancel_scope.cancel()
    (source,) = job["sources"]
    assert job["status"] == "completed", job
    assert source["attempts"] == 2 and len(source["gaps"]) == 1, source
    assert not any("stalled" in e for e in source["errors"]), source["errors"]


async def test_a_source_without_video_fails_at_once(collector, client, tmp_path):
    """An audio-only file (or a codec no segment holds) reads the same every time: before any
    session opened, the source fails at once, saying why, instead of after `max_attempts`
    sessions with backoff in between (a file read five times over)."""
    clip = tmp_path / "media" / "audio.ts"
    clip.parent.mkdir()
    await trio.run_process(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                            "sine=frequency=440:sample_rate=48000:duration=3", "-c:a", "aac",
                            "-f", "mpegts", str(clip)])
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, clip.parent)
        url = http.url(clip)
        with trio.fail_after(30):
            job = await collect_one(client, url, retry={"max_attempts": 5,
                                                       "initial_backoff": 2})
            events = (await client.get(f"/jobs/{job['job_id']}/events")).json()["events"]
        servers.cancel_scope.cancel()
    assert job["status"] == "failed"
    assert job["error"] == f"source 'source-1' ({url}) cannot be recorded: no video stream"
    (source,) = job["sources"]
    assert (source["attempts"], source["failures"], source["segments"]) == (0, 1, [])
    assert [gap["reason"] for gap in source["gaps"]] == ["no_video"]
    assert [e["type"] for e in events] == ["started", "error"]  # no retry


async def test_garbage_port(collector, client):
    """A port that speaks no protocol fails the job with a reason, never a hang or a crash."""
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_garbage)
        with trio.fail_after(30):
            job = await collect_one(client, f"rtsp://127.0.0.1:{port}/cam")
        servers.cancel_scope.cancel()
    assert job["status"] == "failed"
    assert "failed after 2 attempts" in job["error"]
    assert job["sources"][0]["segments"] == []


@pytest.mark.parametrize("url", ["http://no-such-host.invalid/x.ts",
                                 "rtsp://no-such-host.invalid/cam",  # the native client
                                 "rtmp://no-such-host.invalid/live/x"])
async def test_a_host_that_does_not_resolve_says_dns(collector, client, url):
    """Every reader names a failed lookup `dns`: through FFmpeg it was an `ffmpeg` "Input/output
    error", since FFmpeg's tcp protocol reports it so."""
    with trio.fail_after(30):
        job = await collect_one(client, url, retry={"max_attempts": 1})
        events = (await client.get(f"/jobs/{job['job_id']}/events")).json()["events"]
    assert job["status"] == "failed"
    assert job["error"].endswith(f"failed after 1 attempts: host not found for {url}")
    assert [e["reason"] for e in events if e["type"] == "retry"] == ["dns"]


async def test_rtsp_auth_and_not_found(collector, client, media_clip, caplog):
    """Wrong credentials: `unauthorized`; right ones record; an unknown path: `not found`.
    Neither password shows up in any response, WebSocket message (text or JSON) or log record."""
    import logging

    caplog.set_level(logging.DEBUG)
    async with trio.open_nursery() as servers:
        rtsp = await servers.start(
            partial(serve_rtsp, media_clip.path, user="admin", password="pw-S3cr3t")
        )
        wrong = rtsp.url(auth=False).replace("rtsp://", "rtsp://admin:nope-S3cr3t@")
        with trio.fail_after(40):
            bad, good, missing = (
                await collect_one(client, wrong),
                await collect_one(client, rtsp.url()),
                await collect_one(client, rtsp.url("/nothing-here")),
            )
        with trio.fail_after(20):
            seen = [str(job) for job in (bad, good, missing)]
            seen.append((await client.get("/jobs")).text)
            for job in (bad, good, missing):
                for query in ("", "format=json"):
                    seen += (await read_ws(ws_url(collector.url, job["job_id"], query))).messages
        servers.cancel_scope.cancel()
    assert bad["status"] == "failed" and "unauthorized" in bad["error"]
    assert good["status"] == "completed"
    assert missing["status"] == "failed" and "not found" in missing["error"]
    seen += [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert all("S3cr3t" not in text for text in seen)
    assert "rtsp://***@127.0.0.1" in bad["error"]


async def test_camera_restarts_mid_job(collector, client, media_clip):
    """The RTSP server goes away mid-job and comes back on the same port within the retry window:
    the job completes with every step, the outage is a recorded gap, and no file splices the two
    sessions (the segment before the gap ends with `discontinuity`)."""
    async with trio.open_nursery() as outer:
        with trio.CancelScope() as first:
            async with trio.open_nursery() as n1:
                rtsp = await n1.start(serve_rtsp, media_clip.path)
                r = await client.post(
                    "/collect",
                    json={"streams": [rtsp.url()], "duration": 8, "segment_seconds": 2,
                          "retry": {"max_attempts": 10, "initial_backoff": 0.5, "max_backoff": 1}},
                )
                job_id = r.json()["job_id"]
                transcript: list = []

                async def watch() -> None:
                    transcript.append(await read_ws(ws_url(collector.url, job_id)))

                outer.start_soon(watch)
                await trio.sleep(4)
                first.cancel()
        await trio.sleep(1.5)
        async with trio.open_nursery() as n2:
            await n2.start(partial(serve_rtsp, media_clip.path, port=rtsp.port))
            with trio.fail_after(40):
                job = await wait_job(client, job_id)
            n2.cancel_scope.cancel()
    assert job["status"] == "completed", job["error"]
    [source] = job["sources"]
    assert len(source["gaps"]) == 1 and source["gaps"][0]["end"] is not None
    assert "discontinuity" in [s["end_reason"] for s in source["segments"]]
    assert source["attempts"] == 2
    assert transcript[0].messages == expected_texts(job_id, 4)
    total = sum(count_frames(Path(s["path"])) for s in source["segments"])
    assert abs(total - 8 * 25) <= 50


async def test_camera_never_back(collector, client):
    """Nothing listens: the job fails after the policy's attempts, naming the reason."""
    with trio.fail_after(30):
        job = await collect_one(client, "rtsp://127.0.0.1:9/cam")
    assert job["status"] == "failed"
    assert job["error"].startswith(
        "source 'source-1' (rtsp://127.0.0.1:9/cam) failed after 2 attempts"
    )
    assert "refused" in job["error"]
    assert job["sources"][0]["failures"] == 2
    log = (await client.get(f"/jobs/{job['job_id']}/events")).json()["events"]
    retries = [e for e in log if e["type"] == "retry"]
    assert [(e["source"], e["reason"], e["attempt"]) for e in retries] == [
        ("source-1", "refused", 1), ("source-1", "refused", 2)]
    assert log[-1]["type"] == "error"


async def test_one_source_fails_others_succeed(collector, client):
    """A two-source job where one source is down: status `failed`, the error names only the failed
    source, and the good source's segments are complete and listed."""
    with trio.fail_after(30):
        r = await client.post(
            "/collect",
            json={"streams": [{"url": "demo://testsrc", "name": "good"},
                              {"url": "rtsp://127.0.0.1:9/cam", "name": "down"}],
                  "duration": 2, "segment_seconds": 1, "retry": FAST_RETRY},
        )
        job = await wait_job(client, r.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"].startswith("source 'down'") and "'good'" not in job["error"]
    good, down = job["sources"]
    assert good["status"] == "completed" and len(good["segments"]) == 2
    assert down["status"] == "failed" and down["segments"] == []
    assert job["progress"] == {"step": 2, "total": 4}


async def test_camera_backoff_follows_the_jobs_retry(collector, client):
    """The job's retry.initial_backoff drives its camera's reconnect timing (it started the
    camera)."""
    with trio.fail_after(30):
        start = trio.current_time()
        job = await collect_one(
            client, "rtsp://127.0.0.1:9/cam",
            retry={"max_attempts": 3, "initial_backoff": 2.0, "max_backoff": 2.0},
        )
        elapsed = trio.current_time() - start
    assert job["status"] == "failed" and "after 3 attempts" in job["error"]
    assert 3.5 <= elapsed < 10  # two waits of 2 s (+-10% jitter) between three attempts


async def test_a_job_joining_a_failing_camera_counts_its_own_attempts(collector, client):
    """Job B joins a camera that has already failed four times for job A: B gives up after its
    own `max_attempts` (3) failed sessions, not at once with A's count ("after 5 attempts")."""
    url = "rtsp://127.0.0.1:9/cam"
    retry = {"initial_backoff": 0.2, "max_backoff": 0.2}
    with trio.fail_after(30):
        a = (await client.post("/collect", json={
            "streams": [url], "duration": 4, "retry": {**retry, "max_attempts": 30}})).json()
        events_a = f"/jobs/{a['job_id']}/events"
        while len((await client.get(events_a)).json()["events"]) < 5:  # noqa: ASYNC110
            await trio.sleep(0.05)  # started + 4 retries
        b = await collect_one(client, url, retry={**retry, "max_attempts": 3})
        events = (await client.get(f"/jobs/{b['job_id']}/events")).json()["events"]
        await client.delete(f"/jobs/{a['job_id']}")
    assert b["status"] == "failed" and "failed after 3 attempts" in b["error"], b["error"]
    assert [e["attempt"] for e in events if e["type"] == "retry"] == [1, 2, 3]


async def test_a_folder_that_cannot_be_made_fails_the_source_not_the_process(collector, client,
                                                                               settings, media_ts):
    """The camera's reading thread opens the job's first segment and the source's folder cannot
    be made (here `jobs` is a file; a full disk or a lost mount fail the same `mkdir`): the job
    fails with that reason, and the collector carries on (an OSError from `mkdir` used to be
    raised from the job and took the process down with it)."""
    jobs = settings.data_dir / "jobs"
    jobs.write_bytes(b"")
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, media_ts.parent)
        with trio.fail_after(30):
            job = await collect_one(client, http.url(media_ts))
            assert job["status"] == "failed"
            assert "cannot create the folder" in job["error"], job["error"]
            jobs.unlink()
            job = await collect_one(client, http.url(media_ts))
        servers.cancel_scope.cancel()
    assert job["status"] == "completed"
    for seg in job["sources"][0]["segments"]:
        assert count_frames(Path(seg["path"])) == seg["frames"] == 50
