"""VOD HLS playlists read ahead (collector/media/hls_vod.py): which playlists are, what a segment
that fails does to the session and to the job, and what is left to FFmpeg's HLS demuxer."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import trio

from collector.errors import SourceEnded, SourceError, SourceUnavailable
from collector.media.hls_vod import VodPlaylist, parse
from collector.media.pyav_source import PyAVOpener
from tests.client import read_ws, wait_job, ws_url
from tests.media.misbehaving import FolderHttp, serve_folder_http
from tests.media.sink import CountingSink
from tests.test_recording import FPS, check_source_files

URL = "http://user:pw@cam.example:8080/vod/index.m3u8?token=1"
BROKEN = "seg00002.ts"  # the third of the 12 s clip's six 2 s segments


def test_a_vod_media_playlist_is_read_segment_by_segment() -> None:
    """Relative URLs resolve against the playlist's (its credentials kept, its query not), a
    key of METHOD=NONE and a discontinuity are no obstacle."""
    text = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-KEY:METHOD=NONE\n"
            "#EXTINF:2.0,\nseg0.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.0,\n/other/seg1.ts?x=1\n"
            "\n#EXTINF:2.0,\n  https://cdn.example/seg2.ts  \n#EXT-X-ENDLIST\n")
    assert parse(text, URL) == VodPlaylist(URL, (
        "http://user:pw@cam.example:8080/vod/seg0.ts",
        "http://user:pw@cam.example:8080/other/seg1.ts?x=1",
        "https://cdn.example/seg2.ts",
    ))


SEGMENTS = "#EXTINF:2.0,\nseg0.ts\n#EXTINF:2.0,\nseg1.ts\n"


@pytest.mark.parametrize("text", [
    f"#EXTM3U\n#EXT-X-TARGETDURATION:2\n{SEGMENTS}",  # live: no end
    "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n#EXT-X-ENDLIST\n",  # master
    f"#EXTM3U\n#EXT-X-KEY:METHOD=AES-128,URI=\"k\"\n{SEGMENTS}#EXT-X-ENDLIST\n",  # encrypted
    f"#EXTM3U\n#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"https://k/?METHOD=NONE\"\n{SEGMENTS}"
    "#EXT-X-ENDLIST\n",  # encrypted, whatever its key's URL says
    f"#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n{SEGMENTS}#EXT-X-ENDLIST\n",  # fMP4
    f"#EXTM3U\n#EXT-X-BYTERANGE:1000@0\n{SEGMENTS}#EXT-X-ENDLIST\n",  # byte ranges
    f"#EXTM3U\n{SEGMENTS}#EXTINF:2.0,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",  # a local file
    f"#EXTM3U\n{SEGMENTS}#EXTINF:2.0,\ncrypto:http://h/x.ts\n#EXT-X-ENDLIST\n",  # FFmpeg's own
    "#EXTM3U\n#EXT-X-ENDLIST\n",  # no segment
    f"{SEGMENTS}#EXT-X-ENDLIST\n",  # not a playlist
    "",
], ids=["live", "master", "encrypted", "sample-aes", "fmp4", "byte-ranges", "local-file",
        "crypto", "empty", "no-header", "nothing"])
def test_other_playlists_are_left_to_ffmpeg(text: str) -> None:
    assert parse(text, URL) is None


@pytest.fixture
def vod(media_hls: Path, tmp_path: Path) -> Path:
    """A copy of the 12 s clip's VOD playlist and segments, to serve and to change."""
    folder = tmp_path / "vod"
    shutil.copytree(media_hls.parent, folder)
    return folder


async def read_once(url: str, io_timeout_s: float = 10.0) -> tuple[CountingSink, BaseException]:
    """One session of `url`, to its end: what the sink got, and how the session ended."""
    got = CountingSink()
    with trio.fail_after(30), pytest.raises(Exception) as info:
        await PyAVOpener(trio.CapacityLimiter(2), io_timeout_s=io_timeout_s).run(url, {}, got)
    return got, info.value


async def fetching_threads_end(seconds: float) -> None:
    """Wait until no hls_vod fetching thread is left (a thread has no event to wait on)."""
    with trio.fail_after(seconds):
        while any(t.name == "hls-segments" for t in threading.enumerate()):  # noqa: ASYNC110
            await trio.sleep(0.05)


async def test_a_missing_segment_fails_the_session_and_names_it(vod, read_ahead, caplog):
    """A segment answered with 404: the session ends there with the segment's URL and the 404
    (FFmpeg's HLS demuxer skipped it and read on, leaving a hole in the recording), after
    handing over the video before it; no later segment is asked for."""
    read_ahead(True)
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        server.missing[BROKEN] = 99
        got, error = await read_once(f"http://127.0.0.1:{server.port}/index.m3u8")
        servers.cancel_scope.cancel()
    assert "source.read_ahead url=" in caplog.text and "segments=6" in caplog.text
    assert isinstance(error, SourceUnavailable) and error.reason == "not_found"
    assert str(error) == f"not found (404) at http://127.0.0.1:{server.port}/{BROKEN}"
    assert got.sessions == 1
    # the two segments' video, all of it: the input ended where the failed segment starts, so
    # the demuxer handed out what it held, and no packet there can be cut short
    assert got.video == 4 * FPS
    assert "seg00003.ts" not in server.requests


@pytest.mark.parametrize("ranges", [False, True], ids=["no-ranges", "resume-refused"])
async def test_a_segment_cut_short_fails_the_session(vod, read_ahead, caplog, ranges):
    """A segment whose connection closes at half its announced length. At a server without
    byte ranges FFmpeg fails the read; at one that takes them but refuses the request for the
    rest (503), FFmpeg ends it as cleanly as a whole one, and hls_vod tells by its length.
    Either way the session ends there, not as a file read whole, with the video before the cut
    (less each stream's last packet, which may be cut short)."""
    read_ahead(True)
    size = (vod / BROKEN).stat().st_size
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        server.cut[BROKEN], server.ranges = size // 2, ranges
        got, error = await read_once(f"http://127.0.0.1:{server.port}/index.m3u8")
        servers.cancel_scope.cancel()
    shown = f"http://127.0.0.1:{server.port}/{BROKEN}"
    if ranges:
        assert isinstance(error, SourceEnded) and not error.finished
        assert str(error) == f"segment cut short at {size // 2} of {size} bytes: {shown}"
        assert server.requests.count(BROKEN) == 2  # the rest was asked for
    else:
        assert isinstance(error, SourceUnavailable)
        assert str(error) == f"Input/output error ({shown})"
    assert 4 * FPS < got.video < 5 * FPS


async def test_a_silent_segment_times_out(vod, read_ahead, caplog):
    """A segment whose server never answers: FFmpeg's rw_timeout (the session's I/O timeout)
    fails its request, and with it the session, in about that time."""
    read_ahead(True)
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        server.silent.add(BROKEN)
        started = time.monotonic()
        got, error = await read_once(f"http://127.0.0.1:{server.port}/index.m3u8", 1.5)
        elapsed = time.monotonic() - started
        servers.cancel_scope.cancel()
    assert isinstance(error, SourceUnavailable) and error.reason == "timeout", error
    assert str(error) == f"timed out reading http://127.0.0.1:{server.port}/{BROKEN}"
    assert 1.4 < elapsed < 3
    assert got.video == 4 * FPS
    await fetching_threads_end(2)  # with its request


async def test_a_session_that_stops_reading_stops_its_fetching_thread(vod, monkeypatch,
                                                                     read_ahead, caplog):
    """A session that ends before the playlist does (here its sink fails on the first batch)
    stops the thread that fetches the segments, which was waiting for room in its buffer (one
    chunk here): no thread is left holding a connection, no later segment is asked for."""
    from collector.media import hls_vod

    class Failing(CountingSink):
        async def packets_paced(self, batch, written=None) -> None:  # type: ignore[no-untyped-def]
            raise RuntimeError("the jobs went away")

    read_ahead(True)
    monkeypatch.setattr(hls_vod, "AHEAD_BYTES", 1)
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        with trio.fail_after(10), pytest.raises(RuntimeError, match="the jobs went away"):
            await PyAVOpener(trio.CapacityLimiter(2)).run(
                f"http://127.0.0.1:{server.port}/index.m3u8", {}, Failing())
        await fetching_threads_end(5)
        servers.cancel_scope.cancel()
    assert "source.read_ahead url=" in caplog.text and "segments=6" in caplog.text
    assert "seg00005.ts" not in server.requests


async def test_an_unexpected_error_fetching_a_segment_fails_the_session(vod, monkeypatch):
    """Whatever goes wrong in the fetching thread (here a bug, raised as it starts the third
    segment) fails the session; the input's end is not taken for the playlist's."""
    from collector.media import hls_vod

    fetch_one = hls_vod.SegmentStream._fetch_one

    def failing(self, url: str) -> bool:  # type: ignore[no-untyped-def]
        if url.endswith(BROKEN):
            raise RuntimeError(f"a bug at {url}")
        return fetch_one(self, url)

    monkeypatch.setattr(hls_vod.SegmentStream, "_fetch_one", failing)
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        got, error = await read_once(f"http://127.0.0.1:{server.port}/index.m3u8")
        servers.cancel_scope.cancel()
    shown = f"http://127.0.0.1:{server.port}/{BROKEN}"
    assert type(error) is SourceError, error
    assert str(error) == f"fetching {shown} failed: RuntimeError('a bug at {shown}')"
    assert got.video == 4 * FPS


async def test_a_playlist_that_moved_is_read_by_ffmpeg_where_it_is(vod, read_ahead, caplog):
    """A playlist answered with a redirect whose segment URLs are relative: FFmpeg resolves them
    against where it was sent, hls_vod (which cannot see the redirect) against the URL asked
    for, where the first segment is not found. The read-ahead then gives up at its open, and
    FFmpeg's HLS demuxer reads the whole playlist from where it is."""
    read_ahead(True)
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod.parent)
        server.moved["index.m3u8"] = f"http://127.0.0.1:{server.port}/vod/index.m3u8"
        got, error = await read_once(f"http://127.0.0.1:{server.port}/index.m3u8")
        servers.cancel_scope.cancel()
    assert (f"source.read_ahead_failed url=http://127.0.0.1:{server.port}/index.m3u8 error=not "
            f"found (404) at http://127.0.0.1:{server.port}/seg00000.ts\n") in caplog.text
    assert "source.read_ahead url=" not in caplog.text
    assert isinstance(error, SourceEnded) and error.finished
    assert got.sessions == 1 and got.video == 12 * FPS
    assert "seg00000.ts" in server.requests and "vod/seg00005.ts" in server.requests


async def test_a_master_playlist_is_read_by_ffmpeg(vod, media_clip, read_ahead, caplog):
    read_ahead(True)
    (vod / "master.m3u8").write_text(
        "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=500000,RESOLUTION=320x240\nindex.m3u8\n")
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        got, error = await read_once(f"http://127.0.0.1:{server.port}/master.m3u8")
        servers.cancel_scope.cancel()
    assert "source.read_ahead_refused url=" in caplog.text
    assert "source.read_ahead url=" not in caplog.text
    assert isinstance(error, SourceEnded) and error.finished
    assert got.sessions == 1 and got.video == media_clip.frames


async def collect_vod(collector, client, vod: Path, missing: int, max_attempts: int,
                      userinfo: str = "") -> tuple[dict, FolderHttp, list[str]]:
    """One job of the whole VOD whose third segment is answered 404 `missing` times: the job
    once it ended, the server, and the job's WebSocket messages."""
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, vod)
        server.missing[BROKEN] = missing
        url = f"http://{userinfo}127.0.0.1:{server.port}/index.m3u8"
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "vod", "url": url}], "duration": 12, "segment_seconds": 2,
                "retry": {"max_attempts": max_attempts, "initial_backoff": 0.1}})).json()["job_id"]
            job = await wait_job(client, job_id)
            transcript = await read_ws(ws_url(collector.url, job_id))
        servers.cancel_scope.cancel()
    return job, server, transcript.messages


async def test_a_job_reads_a_playlist_again_past_a_segment_missing_once(collector, client, vod):
    """A segment answered with 404 once: the job's next session reads the playlist again and
    skips what was recorded (rereads.py); the job completes with every frame, none twice."""
    job, server, _ = await collect_vod(collector, client, vod, missing=1, max_attempts=3)
    (source,) = job["sources"]
    assert job["status"] == "completed", job
    assert source["attempts"] == 2
    # each session: FFmpeg's HLS demuxer opens the playlist (and probes its first segments),
    # then hls_vod reads it from the start
    assert server.requests.count("index.m3u8") == 4 and server.requests.count(BROKEN) == 2
    check_source_files(source, 12)


async def test_a_job_whose_segment_stays_missing_fails_naming_it_without_credentials(
        collector, client, vod):
    """A segment that is never found: after the policy's attempts the job fails with the
    segment's URL in its error, its password redacted there, in the job and on the WebSocket;
    what was recorded before it is kept, readable."""
    job, server, messages = await collect_vod(collector, client, vod, missing=99,
                                              max_attempts=2, userinfo="viewer:s3cret@")
    (source,) = job["sources"]
    assert job["status"] == "failed"
    shown = f"http://***@127.0.0.1:{server.port}/{BROKEN}"
    assert f"not found (404) at {shown}" in job["error"], job["error"]
    assert messages[-1] == f"Error with Job ID {job['job_id']}: {job['error']}"
    assert "s3cret" not in repr(job) and "s3cret" not in repr(messages)
    assert source["attempts"] == 2 and server.requests.count(BROKEN) == 2
    check_source_files(source, 4)
