"""Recording real streams: RTSP over TCP and UDP, HTTP MPEG-TS and HLS, from real servers."""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest
import trio

from collector.media.segments import SegmentFile
from tests.client import expected_texts, read_ws, wait_job, wait_step, ws_url
from tests.media.clips import make_audio_joining_clip, make_clip, make_ts
from tests.media.misbehaving import serve_pausing_http
from tests.media.probe import count_frames, decode_errors, packets, probe
from tests.media.servers import serve_http, serve_rtmp, serve_rtsp

FPS, GOP_FRAMES = 25, 50  # the test clip: 25 fps, a key frame every 2 s


def check_source_files(source: dict, duration: float, fmt: str = "mp4") -> None:
    """Every segment opens in ffprobe, decodes cleanly, and the frame counts add up."""
    frames = 0
    for seg in source["segments"]:
        path = Path(seg["path"])
        assert path.suffix == f".{fmt}"
        info = probe(path)
        assert info.video is not None, f"{path} has no video"
        n = count_frames(path)
        assert n == seg["frames"], f"{path}: ffprobe counts {n}, job says {seg['frames']}"
        frames += n
        errors = [
            line for line in decode_errors(path).splitlines() if "non monotonically" not in line
        ]
        assert errors == [], f"{path}: {errors}"
    expected = round(duration * FPS)
    assert abs(frames - expected) <= GOP_FRAMES, f"{source['name']}: {frames} frames"


async def test_three_sources_fifteen_steps(collector, client, media_clip, media_ts, media_hls):
    """RTSP/TCP, RTSP/UDP and HTTP MPEG-TS, 10 s each in 2 s segments: Step 1/15 .. 15/15 in order,
    then a clean close; each source's files are readable and hold 10 s of video (within a GOP).
    A second job records HLS and the same RTSP/TCP path at the same time, sharing its session."""
    async with trio.open_nursery() as servers:
        rtsp = await servers.start(serve_rtsp, media_clip.path)
        http = await servers.start(serve_http, media_ts.parent)
        hls_http = await servers.start(serve_http, media_hls.parent)
        with trio.fail_after(60):
            job_a = (
                await client.post(
                    "/collect",
                    json={
                        "streams": [
                            {"name": "rtsp-tcp", "url": rtsp.url(),
                             "options": {"rtsp_transport": "tcp"}},
                            {"name": "rtsp-udp", "url": rtsp.url(),
                             "options": {"rtsp_transport": "udp"}},
                            {"name": "http-ts", "url": http.url(media_ts)},
                        ],
                        "duration": 10,
                        "segment_seconds": 2,
                    },
                )
            ).json()["job_id"]
            job_b = (
                await client.post(
                    "/collect",
                    json={
                        "streams": [
                            {"name": "hls", "url": hls_http.url(media_hls)},
                            {"name": "rtsp-tcp", "url": rtsp.url(),
                             "options": {"rtsp_transport": "tcp"}},
                        ],
                        "duration": 4,
                        "segment_seconds": 2,
                        "format": "mkv",
                    },
                )
            ).json()["job_id"]
            transcript_a = await read_ws(ws_url(collector.url, job_a))
            transcript_b = await read_ws(ws_url(collector.url, job_b))
            events_a = await read_ws(ws_url(collector.url, job_a, "format=json"))
        servers.cancel_scope.cancel()

    assert transcript_a.messages == expected_texts(job_a, 15)
    assert transcript_a.code == 1000
    # With the clip's 2 s GOP and 2 s segments, a source's k-th step is completed by its k-th
    # segment, which the step's event carries. (Steps decided in one batch were announced with
    # the batch's last segment, and a step whose cut was pending with the segment before it.)
    steps: dict[str, int] = {}
    for event in map(json.loads, events_a.messages):
        if event["type"] == "progress":
            steps[event["source"]] = steps.get(event["source"], 0) + 1
            assert event["segment"]["index"] == steps[event["source"]], event
    assert steps == {"rtsp-tcp": 5, "rtsp-udp": 5, "http-ts": 5}
    assert transcript_b.messages == expected_texts(job_b, 4)

    a = (await client.get(f"/jobs/{job_a}")).json()
    assert a["status"] == "completed" and a["progress"] == {"step": 15, "total": 15}
    for source in a["sources"]:
        assert source["status"] == "completed"
        assert source["steps"] == {"done": 5, "total": 5}
        assert len(source["segments"]) == 5
        audio = [probe(Path(s["path"])).audio for s in source["segments"]]
        assert all(a is not None and a.codec_name == "aac" for a in audio), "audio was dropped"
        check_source_files(source, 10)
    b = (await client.get(f"/jobs/{job_b}")).json()
    assert b["status"] == "completed"
    for source in b["sources"]:
        check_source_files(source, 4, "mkv")
    # job B's RTSP/TCP source joined job A's camera: the same upstream session served both
    stats = collector.supervisor.statistics()
    assert stats.sessions_opened == 4  # rtsp-tcp (shared), rtsp-udp, http-ts, hls


async def test_a_file_reaches_disk_in_larger_pieces_than_a_camera(collector, client, tmp_path,
                                                                   monkeypatch):
    """A file over HTTP is recorded far faster than real time: once a segment of it was, the
    next ones reach disk in 256 KiB pieces (whole half-second fragments of 720p: fewer calls
    from FFmpeg into Python); a camera over RTSP, in real time, in 32 KiB ones (one such buffer
    per open segment, for hundreds of cameras). Both record the same 720p clip in full."""
    clip = make_clip(tmp_path / "media" / "clip.mkv", seconds=4, size="1280x720")
    ts = make_ts(clip.path, tmp_path / "media" / "clip.ts")
    pieces: dict[str, list[tuple[str, int]]] = {"http": [], "rtsp": []}
    write = SegmentFile.write

    def counted(self: SegmentFile, data: bytes) -> int:
        path = Path(self.name)
        pieces[path.parent.name].append((path.name, len(memoryview(data).cast("B"))))
        return write(self, data)

    monkeypatch.setattr(SegmentFile, "write", counted)
    async with trio.open_nursery() as servers:
        rtsp = await servers.start(serve_rtsp, clip.path)
        http = await servers.start(serve_http, ts.parent)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "http", "url": http.url(ts)},
                            {"name": "rtsp", "url": rtsp.url()}],
                "duration": 3.5, "segment_seconds": 2})).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert job["status"] == "completed", job["error"]
    for source in job["sources"]:
        check_source_files(source, 3.5)
    assert max(n for _, n in pieces["rtsp"]) == 32 * 1024
    first, second = "segment-00001.mp4", "segment-00002.mp4"
    assert max(n for name, n in pieces["http"] if name == first) == 32 * 1024
    assert 32 * 1024 < max(n for name, n in pieces["http"] if name == second) <= 256 * 1024


async def test_two_concurrent_jobs_share_one_session(collector, client):
    """Two jobs on the same camera at the same time open exactly one upstream session."""
    with trio.fail_after(20):
        ids = [
            (
                await client.post("/collect", json={"duration": 2, "segment_seconds": 1})
            ).json()["job_id"]
            for _ in range(2)
        ]
        # each job subscribes to the camera in its own first steps, after its POST is answered
        during = collector.supervisor.statistics()
        while sum(c.subscribers for c in during.cameras) < 2 and during.jobs.get("running"):
            await trio.sleep(0.01)
            during = collector.supervisor.statistics()
        jobs = [await wait_job(client, i) for i in ids]
    assert [j["status"] for j in jobs] == ["completed", "completed"]
    assert len(during.cameras) == 1 and during.cameras[0].subscribers == 2
    assert collector.supervisor.statistics().sessions_opened == 1


async def test_audio_no_format_holds_is_left_out(collector, client, media_clip, tmp_path):
    """G.711 in FLV over HTTP: its video is recorded, the audio left out. (Describing such a
    source raised a ValueError that ended the whole process, and every other job with it.)"""
    from tests.media.clips import make_flv_alaw

    flv = make_flv_alaw(media_clip.path, tmp_path / "media" / "alaw.flv")
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, flv.parent)
        with trio.fail_after(40):
            other = (await client.post("/collect", json={"duration": 3, "segment_seconds": 1})
                     ).json()["job_id"]
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "alaw", "url": http.url(flv)}], "duration": 4,
                "segment_seconds": 2, "format": "mkv"})).json()["job_id"]
            job, other_job = await wait_job(client, job_id), await wait_job(client, other)
        servers.cancel_scope.cancel()
    assert (job["status"], other_job["status"]) == ("completed", "completed")
    (source,) = job["sources"]
    assert [s["codec"] for s in source["segments"]] == ["h264", "h264"]
    for seg in source["segments"]:
        assert probe(Path(seg["path"])).audio is None
    check_source_files(source, 4, "mkv")


@pytest.mark.parametrize("kind", ["ts", "hls"])
@pytest.mark.parametrize("duration", [12, 20])
async def test_a_file_is_read_once(collector, client, media_ts, media_hls, kind, duration):
    """A file (or VOD playlist) of 12 s: asked for its own length, the job completes with every
    frame once (no packet reaches 12 s, so the end of the file finishes it); asked for more, it
    fails saying how much there was, its segments kept. It used to be read again from its
    start, and the job 'completed' with the start recorded twice."""
    path = media_ts if kind == "ts" else media_hls
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, path.parent)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "file", "url": http.url(path)}], "duration": duration,
                "segment_seconds": 2})).json()["job_id"]
            job = await wait_job(client, job_id)
            transcript = await read_ws(ws_url(collector.url, job_id))
        servers.cancel_scope.cancel()
    (source,) = job["sources"]
    assert source["attempts"] == 1 and source["gaps"] == []
    assert [s["end_reason"] for s in source["segments"]] == ["boundary"] * 5 + ["end"]
    assert sum(s["frames"] for s in source["segments"]) == 12 * FPS
    check_source_files(source, 12)
    if duration == 12:
        assert job["status"] == "completed"
        assert transcript.messages == expected_texts(job_id, 6)
    else:
        assert job["status"] == "failed"
        url = http.url(path)
        error = (f"source 'file' ({url}) ended after 12.00 s of video, 20 s were asked for: "
                 f"the file ended at {url} (a file is read once)")
        assert job["error"] == error
        assert transcript.messages == [*expected_texts(job_id, 10)[:6],
                                       f"Error with Job ID {job_id}: {error}"]


async def test_a_stream_that_appears_mid_file_does_not_fail_the_job(collector, client, tmp_path,
                                                                     caplog):
    """An MPEG-TS file of 4 s of video alone, then 4 s with audio. FFmpeg's open sees only the
    video; PyAV skips the audio's packets, then at the end of the file its flush looked the audio
    stream up and raised IndexError: the session 'crashed' with every packet of its last batch
    undelivered, and the job failed after 5 attempts ("internal error: tuple index out of
    range"), having recorded nothing of an 8 s file. Now the end of the file ends it: the job
    completes with all 200 frames (and a warning says a stream was left out, when PyAV's flush
    looked it up)."""
    clip = make_audio_joining_clip(tmp_path / "media" / "joined.ts")
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, clip.path.parent)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "file", "url": http.url(clip.path)}], "duration": 8,
                "segment_seconds": 2})).json()["job_id"]
            job = await wait_job(client, job_id)
            transcript = await read_ws(ws_url(collector.url, job_id))
        servers.cancel_scope.cancel()
    assert job["status"] == "completed", job.get("error")
    assert transcript.messages == expected_texts(job_id, 4)
    (source,) = job["sources"]
    assert source["attempts"] == 1 and source["gaps"] == []
    assert [s["codec"] for s in source["segments"]] == ["h264"] * 4
    assert sum(s["frames"] for s in source["segments"]) == clip.frames
    check_source_files(source, 8)
    # PyAV's flush looks the new stream up only if a byte it reads past its own array is set
    # (leftover heap): the warning says so when it does, and only then
    warned = [r.getMessage() for r in caplog.records if "source.stream_appeared" in r.getMessage()]
    assert warned in ([], [f"source.stream_appeared url={http.url(clip.path)} error=no stream 1 "
                           "among the 1 opened: a stream that appeared after the open was left "
                           "out"])


@pytest.mark.parametrize(("ranges", "ahead"),
                         [(True, False), (False, False), (True, True), (False, True)],
                         ids=["ranges", "no-ranges", "ranges-read-ahead", "no-ranges-read-ahead"])
async def test_a_file_whose_connection_breaks_is_not_recorded_twice(collector, client, media_ts,
                                                                    ranges, ahead, read_ahead,
                                                                    caplog):
    """A 12 s file whose first connection breaks at 40 %. A server that takes byte ranges is
    asked for the rest (FFmpeg's reconnect): one session, every frame once, the job completes,
    also when the file is read ahead (FFmpeg's `async` protocol over the reconnecting one).
    One that does not is read again from its start, and what the jobs had is skipped: the
    video resumes at the first key frame after the break, with a gap, never a frame twice; the
    job, short of its 12 s, fails saying so. (Both used to record the file's start twice.)"""
    from tests.media.misbehaving import serve_breaking_http

    read_ahead(ahead)
    size = media_ts.stat().st_size
    async with trio.open_nursery() as servers:
        # (read ahead, the second connection of a session is the one read: it breaks)
        server = await servers.start(partial(serve_breaking_http, media_ts, size * 2 // 5, ranges,
                                             breaking_request=2 if ahead else 1))
        url = f"http://127.0.0.1:{server.port}/clip.ts"
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "file", "url": url}], "duration": 12, "segment_seconds": 2,
                "retry": {"initial_backoff": 0.1}})).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    (source,) = job["sources"]
    video = [p for s in source["segments"] for p in packets(Path(s["path"]))]
    hashes = [p.data_hash for p in video]
    assert len(set(hashes)) == len(hashes), "a frame was recorded twice"
    assert ("source.read_ahead " in caplog.text) is ahead
    if ranges:
        assert server.resumed and server.ranges[-1] == f"bytes={size * 2 // 5}-", server.ranges
        assert job["status"] == "completed", job
        assert source["attempts"] == 1 and source["gaps"] == []
        assert [s["end_reason"] for s in source["segments"]] == ["boundary"] * 5 + ["end"]
        assert len(video) == 12 * FPS
        check_source_files(source, 12)
        return
    # (FFmpeg always asks from 0 at first; read ahead, each session asks twice)
    assert server.ranges == ["bytes=0-"] * (4 if ahead else 2)
    assert job["status"] == "failed", job
    assert source["attempts"] == 2 and len(source["gaps"]) == 1
    assert 12 * FPS - GOP_FRAMES <= len(video) < 12 * FPS
    assert job["error"].startswith(f"source 'file' ({url}) ended after "), job["error"]
    check_source_files(source, 12)


async def test_an_flv_file_read_again_keeps_its_new_picture_size(collector, client, tmp_path):
    """The FLV whose picture size changes after 4 s (a new AVC sequence header, sent once),
    its connection broken in the second size by a server without byte ranges: the re-read
    skips what the job had, the header among it. It used to start the rest under the first
    size's header (undecodable), and the frame cut by the break ended a segment, torn. Now the
    header skipped is applied where the skip ends, the torn frame is dropped, and each file
    holds one size, the one it says, and decodes cleanly; no frame twice."""
    from tests.media.clips import make_switching_flv
    from tests.media.misbehaving import serve_breaking_http
    from tests.rtsp.test_real_streams import frame_sizes

    clip = await trio.to_thread.run_sync(partial(
        make_switching_flv, tmp_path / "media" / "switch.flv", ("320x240", "480x360")))
    size = clip.path.stat().st_size
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_breaking_http, clip.path, size * 13 // 20, False)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [f"http://127.0.0.1:{server.port}/switch.flv"], "duration": 8,
                "segment_seconds": 60, "retry": {"initial_backoff": 0.1}})).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    (source,) = job["sources"]
    assert server.ranges == ["bytes=0-", "bytes=0-"] and source["attempts"] == 2
    segments = source["segments"]
    assert [s["end_reason"] for s in segments] == ["discontinuity", "discontinuity", "end"]
    for seg, picture in zip(segments, [(320, 240), (480, 360), (480, 360)], strict=True):
        path = Path(seg["path"])
        assert frame_sizes(path) == [picture] * seg["frames"], path
        assert decode_errors(path) == "", path
    assert segments[0]["frames"] == 100
    video = [p.data_hash for s in segments for p in packets(Path(s["path"]))]
    assert len(set(video)) == len(video), "a frame was recorded twice"
    assert 8 * FPS - GOP_FRAMES <= len(video) < 8 * FPS


@pytest.mark.parametrize("cut", [False, True], ids=["whole", "mid-frame"])
async def test_a_live_http_stream_that_ends_is_read_again(collector, client, media_ts, cut):
    """A stream without a Content-Length is live: its end is an outage, retried, with a gap,
    and the job goes on recording from the next session until it has its duration. A stream
    that ends mid-frame leaves no torn frame at the end of its segment (every file decodes)."""
    from tests.media.misbehaving import serve_live_http

    nbytes = media_ts.stat().st_size * 2 // 3 + 101 if cut else None
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_live_http, media_ts, nbytes)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [f"http://127.0.0.1:{port}/live.ts"], "duration": 12 if cut else 16,
                "segment_seconds": 4, "retry": {"initial_backoff": 0.1}})).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    (source,) = job["sources"]
    assert job["status"] == "completed", job
    # (FFmpeg reports the close of a stream without a length as an I/O error: reason "ffmpeg")
    assert source["attempts"] == 2 and len(source["gaps"]) == 1
    assert [s["end_reason"] for s in source["segments"]] == (
        ["boundary", "discontinuity", "boundary", "end"] if cut
        else ["boundary"] * 2 + ["discontinuity", "boundary", "end"])
    check_source_files(source, 12 if cut else 16)  # each file decodes without an error


async def test_a_live_stream_that_ends_after_the_duration_completes_the_job(collector, client,
                                                                             media_ts):
    """A live stream (no Content-Length) cut inside the frame at 8 s, for a job of 8 s: every
    frame the duration needs came whole, only the one that would have finished the recording
    never does. The job waited for the next session (and would have failed had none come),
    then recorded one frame more in a segment of its own; it now completes at the end of the
    stream, in one session."""
    import av

    from tests.media.misbehaving import serve_live_http

    with av.open(str(media_ts)) as container:
        video = container.streams.video[0]
        first = None
        for packet in container.demux(video):
            if packet.pts is None:
                continue
            first = packet.pts if first is None else first
            if (packet.pts - first) * video.time_base >= 8:
                cut = packet.pos + 300  # inside the key frame at 8 s
                break
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_live_http, media_ts, cut)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [f"http://127.0.0.1:{port}/live.ts"], "duration": 8,
                "segment_seconds": 4, "retry": {"initial_backoff": 0.1}})).json()["job_id"]
            job = await wait_job(client, job_id)
            transcript = await read_ws(ws_url(collector.url, job_id))
        servers.cancel_scope.cancel()
    assert job["status"] == "completed", job
    assert transcript.messages == expected_texts(job_id, 2)
    (source,) = job["sources"]
    assert (source["attempts"], source["gaps"], source["errors"]) == (1, [], []), source
    assert [(s["end_reason"], s["frames"]) for s in source["segments"]] == [
        ("boundary", 100), ("end", 100)]
    check_source_files(source, 8)


async def test_mjpeg_frames_are_stamped_when_they_arrive(collector, client):
    """A 10 fps MJPEG camera over HTTP (multipart; ffmpeg serving it live): FFmpeg's demuxer
    numbers its frames at an assumed 25 fps, so 3 s of video took 7.5 s and stored 75 frames
    that played 2.5x too fast. Stamped at arrival, 3 s is ~30 frames and files say so."""
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cam.mjpg"
    camera = await trio.lowlevel.open_process(
        ["ffmpeg", "-v", "error", "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=10",
         "-c:v", "mjpeg", "-q:v", "5", "-f", "mpjpeg", "-listen", "1", url],
        stdin=subprocess.DEVNULL)
    try:
        with trio.fail_after(30):
            job_id = (await client.post("/collect", json={
                "streams": [url], "duration": 3, "segment_seconds": 1, "format": "mkv",
                "retry": {"initial_backoff": 0.2}})).json()["job_id"]
            job = await wait_job(client, job_id)
    finally:
        camera.kill()
        await camera.wait()
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    frames = [count_frames(Path(seg["path"])) for seg in source["segments"]]
    assert frames == [seg["frames"] for seg in source["segments"]]
    assert 27 <= sum(frames) <= 31, frames  # 3 s at 10 fps, give or take the cut frames
    assert abs(sum(seg["duration"] for seg in source["segments"]) - 3) < 0.35


async def record_over_http(client, clip: Path, **request) -> dict:
    """The job record of `clip`, served over HTTP, recorded as `request` says."""
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, clip.parent)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [http.url(clip)], **request})).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    return job


@pytest.mark.parametrize(("fmt", "codec"), [("mp4", "h264"), ("mkv", "h264"), ("ts", "h264"),
                                           ("mp4", "h265"), ("mkv", "h265")])
async def test_a_file_that_changes_size_is_cut_there(collector, client, tmp_path, fmt, codec):
    """MPEG-TS over HTTP whose picture size changes from 320x240 to 480x360 after 4 s, in one
    long segment: it was one file with both sizes under the first one's header. FFmpeg does not
    say; the PyAV source sees the key frame's new SPS (H.264, H.265) and describes the session
    anew, so each file holds one size (100 frames, then 50) and decodes cleanly, as over native
    RTSP."""
    from tests.media.clips import make_switching_clip
    from tests.rtsp.test_real_streams import check_cut_at_the_size_change

    clip = await trio.to_thread.run_sync(partial(
        make_switching_clip, tmp_path / "media" / "switch.ts", ("320x240", "480x360"),
        codec=codec))
    job = await record_over_http(client, clip.path, duration=6, segment_seconds=60, format=fmt)
    check_cut_at_the_size_change(job, [(320, 240), (480, 360)])


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "ts"])
async def test_an_flv_stream_that_changes_size_is_cut_there(collector, client, tmp_path, fmt):
    """FLV over HTTP (as RTMP carries it) whose picture size changes from 320x240 to 480x360
    after 4 s, its parameter sets only in AVC sequence headers: FFmpeg hands the new one on as
    side data of the next packet, which the segment's packets never carried, so the second
    size was recorded under the first one's header and did not decode. The PyAV source now
    describes the session anew there, with the new header as the stream's extradata."""
    from tests.media.clips import make_switching_flv
    from tests.rtsp.test_real_streams import check_cut_at_the_size_change

    clip = await trio.to_thread.run_sync(partial(
        make_switching_flv, tmp_path / "media" / "switch.flv", ("320x240", "480x360")))
    job = await record_over_http(client, clip.path, duration=6, segment_seconds=60, format=fmt)
    check_cut_at_the_size_change(job, [(320, 240), (480, 360)])


async def test_rtmp_is_recorded(collector, client, media_clip):
    """A real RTMP server (FFmpeg, `-listen 1`) sending the clip in real time: 4 s in 2 s
    segments, Step 1/2 and 2/2, every file readable and the frames all there."""
    async with trio.open_nursery() as servers:
        rtmp = await servers.start(serve_rtmp, media_clip.path)
        with trio.fail_after(30):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": "rtmp", "url": rtmp.url}], "duration": 4,
                "segment_seconds": 2})).json()["job_id"]
            job = await wait_job(client, job_id)
            transcript = await read_ws(ws_url(collector.url, job_id))
        servers.cancel_scope.cancel()
    assert job["status"] == "completed", job["error"]
    assert transcript.messages == expected_texts(job_id, 2)
    (source,) = job["sources"]
    assert source["attempts"] == 1 and source["gaps"] == []
    assert [s["frames"] for s in source["segments"]] == [50, 50]
    assert [s["codec"] for s in source["segments"]] == ["h264+aac"] * 2
    check_source_files(source, 4)


async def test_rtmp_that_changes_size_is_cut_there(collector, client, tmp_path):
    """The FLV whose picture size changes after 4 s (a new AVC sequence header), sent over
    RTMP: one connection, a file per size, each decoding cleanly."""
    from tests.media.clips import make_switching_flv
    from tests.rtsp.test_real_streams import check_cut_at_the_size_change

    clip = await trio.to_thread.run_sync(partial(
        make_switching_flv, tmp_path / "media" / "switch.flv", ("320x240", "480x360")))
    async with trio.open_nursery() as servers:
        rtmp = await servers.start(serve_rtmp, clip.path)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [rtmp.url], "duration": 6, "segment_seconds": 60})).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    check_cut_at_the_size_change(job, [(320, 240), (480, 360)])


@contextlib.asynccontextmanager
async def live_hls(clip: Path, folder: Path) -> AsyncIterator[trio.Process]:
    """An ffmpeg process that plays `clip` in a loop, in real time, as a live HLS playlist of
    1 s segments (`folder`/live.m3u8, the last 6 listed, each written whole before listed);
    entered once the playlist exists, killed on exit if still running."""
    import subprocess

    await trio.Path(folder).mkdir(exist_ok=True)
    encoder = await trio.lowlevel.open_process(
        ["ffmpeg", "-v", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
         "-c", "copy", "-f", "hls", "-hls_time", "1", "-hls_list_size", "6",
         "-hls_flags", "temp_file", str(folder / "live.m3u8")], stdin=subprocess.DEVNULL)
    try:
        with trio.fail_after(20):
            while not (folder / "live.m3u8").exists():  # noqa: ASYNC110 (ffmpeg writes it)
                await trio.sleep(0.05)
        yield encoder
    finally:
        if encoder.returncode is None:
            encoder.kill()
        await encoder.wait()


async def test_a_live_playlist_that_stops_growing_ends_its_session(collector, client,
                                                                    media_clip, tmp_path):
    """Live HLS whose encoder dies (SIGKILL: no ENDLIST): FFmpeg reloaded the unchanged playlist
    for minutes, so only the stall watchdog (10 s) ended the session, and its abandoned thread
    went on polling the origin. With `m3u8_hold_counters` FFmpeg ends the stream after a few
    unchanged reloads: the session ends as `ended` (so its thread has returned from FFmpeg),
    before the watchdog."""
    import signal

    live = tmp_path / "live"
    async with live_hls(media_clip.path, live) as encoder, trio.open_nursery() as servers:
        http = await servers.start(serve_http, live)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [http.url(live / "live.m3u8")], "duration": 30,
                "segment_seconds": 2, "retry": {"max_attempts": 1}})).json()["job_id"]
            await wait_step(client, job_id, 1)
            encoder.send_signal(signal.SIGKILL)
            killed = trio.current_time()
            job = await wait_job(client, job_id)
            ended_after = trio.current_time() - killed
        servers.cancel_scope.cancel()
    events = (await client.get(f"/jobs/{job_id}/events")).json()["events"]
    assert job["status"] == "failed"
    assert [e["reason"] for e in events if e["type"] == "retry"] == ["ended"]
    assert ended_after < 9, ended_after  # before the 10 s stall watchdog
    check_source_files(job["sources"][0], sum(s["duration"] for s in job["sources"][0]["segments"]))


async def test_a_live_playlist_read_again_does_not_record_twice(collector, client, media_clip,
                                                                tmp_path):
    """Live HLS whose origin answers one playlist reload with 404: the session ends, and the
    next one starts a few segments back from the live edge (FFmpeg's live_start_index), among
    segments the job has already recorded. Those are skipped (the camera remembers the last
    timestamps handed over): never a frame twice, and recording goes on at the next key frame
    past them, with one gap."""
    from tests.media.misbehaving import serve_folder_http

    live = tmp_path / "live"
    async with live_hls(media_clip.path, live), trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, live)
        with trio.fail_after(40):
            url = f"http://127.0.0.1:{server.port}/live.m3u8"
            job_id = (await client.post("/collect", json={
                "streams": [url], "duration": 10, "segment_seconds": 2,
                "retry": {"initial_backoff": 0.2}})).json()["job_id"]
            await wait_step(client, job_id, 2)
            server.fail()
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert server.failed == 1
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    assert source["attempts"] == 2 and len(source["gaps"]) == 1
    assert "discontinuity" in [s["end_reason"] for s in source["segments"]]
    hashes = [p.data_hash for s in source["segments"] for p in packets(Path(s["path"]))]
    assert len(set(hashes)) == len(hashes), "a frame was recorded twice"
    check_source_files(source, 10)


async def record_live_refusing(client, media_clip, tmp_path, duration: int,
                               refusals: dict[int, int]):
    """A job of `duration` s in 2 s segments on a live playlist whose origin, once the job has
    its first step, refuses the segment `offset` after the last one listed then `count` times,
    for each offset: count in `refusals`. Returns the finished job, the origin (its `missing`
    and `requests`) and the names of the segments refused."""
    import re

    from tests.media.misbehaving import serve_folder_http

    live = tmp_path / "live"
    async with live_hls(media_clip.path, live), trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, live)
        with trio.fail_after(40):
            job_id = (await client.post("/collect", json={
                "streams": [f"http://127.0.0.1:{server.port}/live.m3u8"], "duration": duration,
                "segment_seconds": 2, "retry": {"max_attempts": 1}})).json()["job_id"]
            await wait_step(client, job_id, 1)
            text = await trio.Path(live / "live.m3u8").read_text()
            listed = max(int(n) for n in re.findall(r"^live(\d+)\.ts$", text, re.M))
            refused = {f"live{listed + offset}.ts": count for offset, count in refusals.items()}
            server.missing.update(refused)
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    return job, server, list(refused)


async def test_a_live_playlist_segment_that_fails_once_is_fetched_again(collector, client,
                                                                        media_clip, tmp_path):
    """Live HLS whose origin answers two upcoming segments with 404 once each (a reset
    connection, an error answered once). FFmpeg's HLS demuxer skipped such a segment: here the
    job 'completed' with 8 s of video whose third segment spanned 6 s of media, seconds lost
    without a gap, since the timestamps jumped less than 5 s. With `seg_max_retry` 1 it asks
    once more: the job records 8 s of contiguous video in one session."""
    job, server, refused = await record_live_refusing(client, media_clip, tmp_path, 8, {2: 1, 3: 1})
    assert [server.missing[name] for name in refused] == [0, 0]  # each refused once
    assert [server.requests.count(name) for name in refused] == [2, 2]
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    assert source["attempts"] == 1 and source["gaps"] == []
    segments = source["segments"]
    assert [s["frames"] for s in segments] == [2 * FPS] * 4
    for s in segments:  # each spans the time of its frames (a skipped segment stretched one)
        assert abs(s["end_time"] - s["start_time"] - s["duration"]) < 0.2, s
    for before, after in itertools.pairwise(segments):
        assert abs(after["start_time"] - before["end_time"]) < 0.2, (before, after)
    check_source_files(source, 8)


async def test_a_live_playlist_segment_skipped_is_a_gap_not_recorded_video(collector, client,
                                                                          media_clip, tmp_path):
    """Live HLS whose origin refuses an upcoming segment both times FFmpeg asks: its HLS demuxer
    skips it, and the video jumps 2 s. That passed as recorded video (a jump under 5 s): the job
    'completed' 2 s short, with no gap. Now a jump over 1.5 s in a playlist is media missing: the
    segment before it closes as a discontinuity, the gap is listed (`skipped`, 2 s of media), and
    the job records on until it has its 12 s of video, in one session. (The segment refused is
    the second after the last listed once the job has 2 s: it comes 8 s into the recording.)"""
    job, server, (refused,) = await record_live_refusing(client, media_clip, tmp_path, 12, {2: 2})
    assert server.missing[refused] == 0 and server.requests.count(refused) == 2
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    assert source["attempts"] == 1
    (gap,) = source["gaps"]
    assert (gap["reason"], gap["seconds"], gap["end"] - gap["start"]) == ("skipped", 2.0, 0), gap
    segments = source["segments"]
    assert [s["end_reason"] for s in segments].count("discontinuity") == 1, segments
    assert sum(s["frames"] for s in segments) == 12 * FPS, [
        (s["frames"], s["duration"], s["end_reason"]) for s in segments]
    check_source_files(source, 12)


async def test_a_live_encoder_that_restarts_its_clock_is_recorded(collector, client,
                                                                  media_clip, tmp_path):
    """The live playlist's encoder dies and another starts (other pictures, its clock from the
    same start: ffmpeg's 1.4 s) while the job retries. The new session's timestamps fall among
    those already recorded, but its first key frame is none the job was handed: nothing of it
    is skipped (it was, up to the old session's last timestamp: seconds of new footage)."""

    from tests.media.clips import make_clip
    from tests.media.misbehaving import serve_folder_http
    from tests.rtsp.test_real_streams import frame_sizes

    other = await trio.to_thread.run_sync(partial(
        make_clip, tmp_path / "media" / "other.mkv", seconds=12, size="352x288"))

    live = tmp_path / "live"
    async with trio.open_nursery() as servers:
        server = await servers.start(serve_folder_http, live)
        with trio.fail_after(60):
            async with live_hls(media_clip.path, live):
                job_id = (await client.post("/collect", json={
                    "streams": [f"http://127.0.0.1:{server.port}/live.m3u8"], "duration": 60,
                    "segment_seconds": 2, "retry": {"initial_backoff": 0.2, "max_attempts": 50},
                })).json()["job_id"]
                await wait_step(client, job_id, 3)
            server.fail(10_000)  # the encoder is gone (killed): so is its playlist
            for old in live.iterdir():
                old.unlink()
            async with live_hls(other.path, live):
                server.failing = 0
                await trio.sleep(8)
                await client.delete(f"/jobs/{job_id}")
                job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    (source,) = job["sources"]
    restarted = [s for s in source["segments"] if s["start_time"] >= source["gaps"][0]["start"]]
    frames = sum(s["frames"] for s in restarted)
    assert frames >= 5 * FPS, [(s["frames"], s["end_reason"]) for s in source["segments"]]
    assert {size for s in restarted for size in frame_sizes(Path(s["path"]))} == {(352, 288)}


async def test_formats_mkv_and_ts(collector, client):
    """`format` mkv and ts produce readable files of the right container."""
    with trio.fail_after(20):
        ids = {
            fmt: (
                await client.post(
                    "/collect", json={"duration": 2, "segment_seconds": 1, "format": fmt}
                )
            ).json()["job_id"]
            for fmt in ("mkv", "ts")
        }
        jobs = {fmt: await wait_job(client, i) for fmt, i in ids.items()}
    names = {"mkv": "matroska,webm", "ts": "mpegts"}
    for fmt, job in jobs.items():
        assert job["status"] == "completed"
        for seg in job["sources"][0]["segments"]:
            path = Path(seg["path"])
            assert path.suffix == f".{fmt}"
            assert probe(path).format_name == names[fmt]
            assert count_frames(path) == seg["frames"] == 10


async def test_two_sources_on_one_http_camera_write_identical_files(collector, client, media_ts,
                                                                    media_hls):
    """Two sources on the same HTTP URL share one camera session and every demuxed packet (its
    buffer, not a copy): each source muxes it through its own av.Packet, so neither disturbs the
    other's timestamps or flags. Their mp4 segments are byte for byte the same, and ffprobe reads
    every frame of them. (Two sources of one job rather than two jobs: they subscribe together,
    so both start at the same key frame.) Same for a VOD HLS playlist."""
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, media_ts.parent)
        hls = await servers.start(serve_http, media_hls.parent)
        urls = {"ts": http.url(media_ts), "hls": hls.url(media_hls)}
        with trio.fail_after(60):
            job_id = (await client.post("/collect", json={
                "streams": [{"name": f"{kind}-{n}", "url": url}
                            for kind, url in urls.items() for n in (1, 2)],
                "duration": 8, "segment_seconds": 2,
            })).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert job["status"] == "completed"
    assert collector.supervisor.statistics().sessions_opened == 2  # one per URL
    sources = {s["name"]: s for s in job["sources"]}
    for kind in urls:
        one, two = sources[f"{kind}-1"], sources[f"{kind}-2"]
        for source in (one, two):
            check_source_files(source, 8)
        assert len(one["segments"]) == len(two["segments"]) == 4
        for a, b in zip(one["segments"], two["segments"], strict=True):
            assert same_bytes(Path(a["path"]), Path(b["path"])), a["path"]


def same_bytes(a: Path, b: Path) -> bool:
    return a.read_bytes() == b.read_bytes()


async def test_a_second_job_joins_a_file_mid_way(collector, client, media_ts):
    """A job joins the HTTP camera of a file that another job is halfway through (the server holds
    the file there). The camera's reading thread muxes for the first job with the recorder it
    lent; the second one joins that same session and records from the next key frame: its video
    packets are exactly the first job's from there on, and both jobs' files are whole."""
    size = media_ts.stat().st_size
    gate = trio.Event()
    # ~5 s of the 12 s clip, a pause (so the first job hears of its first segments), then up to
    # ~6 s, held there until the second job has joined
    pauses = [(size * 5 // 12, 0.3), (size // 2, gate)]
    async with trio.open_nursery() as servers:
        port = await servers.start(serve_pausing_http, media_ts, pauses)
        url = f"http://127.0.0.1:{port}/clip.ts"
        with trio.fail_after(60):
            first = (await client.post("/collect", json={
                "streams": [{"name": "first", "url": url}], "duration": 10, "segment_seconds": 2,
            })).json()["job_id"]
            await wait_step(client, first, 1)
            second = (await client.post("/collect", json={
                "streams": [{"name": "second", "url": url}], "duration": 4, "segment_seconds": 2,
            })).json()["job_id"]
            while True:  # the second job has joined the camera
                if collector.supervisor.statistics().cameras[0].subscribers == 2:
                    break
                await trio.sleep(0.01)
            gate.set()
            jobs = [await wait_job(client, job_id) for job_id in (first, second)]
        servers.cancel_scope.cancel()
    assert [job["status"] for job in jobs] == ["completed", "completed"]
    assert collector.supervisor.statistics().sessions_opened == 1
    [one], [two] = (job["sources"] for job in jobs)
    check_source_files(one, 10)
    check_source_files(two, 4)
    hashes = [[p.data_hash for s in src["segments"] for p in packets(Path(s["path"]))]
              for src in (one, two)]
    start = hashes[0].index(hashes[1][0])
    assert start >= 4 * FPS, "the second job started at the beginning, not mid-way"
    assert hashes[1] == hashes[0][start : start + len(hashes[1])]


async def test_hls_cannot_read_local_files(collector, client, tmp_path):
    """A playlist that points at file: URLs is refused by protocol_whitelist: the job fails and
    nothing of the local file is recorded."""
    secret = tmp_path / "secret.ts"
    secret.write_bytes(b"G" * 188 * 10)
    folder = tmp_path / "evil"
    folder.mkdir()
    (folder / "index.m3u8").write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        f"#EXTINF:2.0,\nfile://{secret}\n#EXTINF:2.0,\nconcat:{secret}|{secret}\n#EXT-X-ENDLIST\n"
    )
    async with trio.open_nursery() as servers:
        http = await servers.start(serve_http, folder)
        with trio.fail_after(30):
            r = await client.post(
                "/collect",
                json={
                    "streams": [http.url("index.m3u8")],
                    "duration": 2,
                    "retry": {"max_attempts": 1},
                },
            )
            job = await wait_job(client, r.json()["job_id"])
        servers.cancel_scope.cancel()
    assert job["status"] == "failed"
    assert job["sources"][0]["segments"] == []
    assert "source 'source-1'" in job["error"]


async def test_a_file_is_read_only_as_fast_as_the_job_records_it(settings, media_ts, tmp_path):
    """An HTTP MPEG-TS file is demuxed far faster than real time. With room for a single batch
    between camera and job, a live source would drop the job at once ("fell behind"); a file waits
    for it instead (backpressure), so the job records the whole 10 s, every step and every frame."""
    from dataclasses import replace
    from functools import partial

    from collector.server import serve

    tight = replace(settings, subscriber_buffer=1)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        http = await nursery.start(serve_http, media_ts.parent)
        running = await nursery.start(partial(serve, tight, stop=stop))
        with trio.fail_after(60):
            import httpx

            async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
                job_id = (await client.post("/collect", json={
                    "streams": [{"name": "file", "url": http.url(media_ts)}],
                    "duration": 10, "segment_seconds": 2,
                })).json()["job_id"]
                transcript = await read_ws(ws_url(running.url, job_id))
                job = (await client.get(f"/jobs/{job_id}")).json()
        stop.set()
        nursery.cancel_scope.cancel()
    assert transcript.messages == expected_texts(job_id, 5)
    assert job["status"] == "completed"
    [source] = job["sources"]
    assert source["failures"] == 0
    check_source_files(source, 10)
