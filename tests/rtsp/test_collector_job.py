"""A whole collection job through the native RTSP client: HTTP in, segment files out.

collector/server.py routes rtsp:// (over TCP) to the native client; this module records the
opener the server picks, so the test proves the camera and job actors, the cut plan and the
segment writers all ran on the native client's packets.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import trio

import collector.server
from collector.rtsp.opener import RtspOpener
from tests.client import wait_job
from tests.media.probe import count_frames, decode_errors, probe
from tests.media.servers import serve_rtsp

FPS = 25


@pytest.fixture(autouse=True)
def native_rtsp(monkeypatch: pytest.MonkeyPatch) -> list[RtspOpener]:
    """The openers the server picked for rtsp:// URLs (each must be the native client)."""
    made: list[RtspOpener] = []
    original = collector.server.make_opener_for

    def make_opener_for(settings, *args):  # type: ignore[no-untyped-def]
        pick = original(settings, *args)

        def recording(url: str):  # type: ignore[no-untyped-def]
            opener = pick(url)
            if url.startswith("rtsp://"):
                assert isinstance(opener, RtspOpener)
                made.append(opener)
            return opener

        return recording

    monkeypatch.setattr(collector.server, "make_opener_for", make_opener_for)
    return made


@pytest.mark.parametrize("fmt", ["mp4", "mkv", "ts"])
async def test_job_records_through_native_client(native_rtsp, collector, client, media_clip,
                                                 fmt: str):
    """A 6 s job in 2 s segments over the native client completes; every segment has audio,
    decodes cleanly and holds exactly the frames the job reports; 6 s of 25 fps video in all."""
    async with trio.open_nursery() as servers:
        rtsp = await servers.start(partial(serve_rtsp, media_clip.path, user="u", password="p"))
        with trio.fail_after(40):
            body = {"streams": [rtsp.url()], "duration": 6, "segment_seconds": 2, "format": fmt}
            job_id = (await client.post("/collect", json=body)).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    assert len(source["segments"]) == 3
    frames = 0
    for seg in source["segments"]:
        path = Path(seg["path"])
        assert probe(path).audio is not None
        assert count_frames(path) == seg["frames"]
        assert decode_errors(path) == ""
        frames += seg["frames"]
    assert frames == 6 * FPS
    assert native_rtsp[0].statistics().sessions == 1


async def test_job_cuts_a_segment_where_the_camera_changes_size(native_rtsp, collector, client,
                                                                 tmp_path: Path):
    """A camera that switches from 320x240 to 480x360 after 4 s, recorded by a 6 s job in one
    long segment: the job gets a new session description at the switch (the camera actor's
    SessionInfo), closes its segment there and opens the next, so each file holds one size
    (100 frames at 320x240, then 50 at 480x360) and decodes cleanly."""
    from tests.media.clips import make_switching_clip
    from tests.rtsp.test_real_streams import check_cut_at_the_size_change

    clip = await trio.to_thread.run_sync(
        make_switching_clip, tmp_path / "switch.ts", ("320x240", "480x360"))
    async with trio.open_nursery() as servers:
        rtsp = await servers.start(serve_rtsp, clip.path)
        with trio.fail_after(40):
            body = {"streams": [rtsp.url()], "duration": 6, "segment_seconds": 60, "format": "mp4"}
            job_id = (await client.post("/collect", json=body)).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    check_cut_at_the_size_change(job, [(320, 240), (480, 360)])
    assert native_rtsp[0].statistics().sessions == 1  # one connection, described twice
    assert collector.supervisor.statistics().sessions_opened == 1  # the camera actor's count


async def test_job_records_video_only_from_a_camera_whose_audio_no_muxer_takes(
        native_rtsp, collector, client, media_clip):
    """A camera with real H.264 (the test clip's frames) and a 22.2 AAC track (24 channels: no
    muxer template takes it) over the native client, as a 4 s job in 2 s segments: the job
    completes instead of failing with `codec`; the audio track was never set up; each segment
    says "h264", holds one video stream in ffprobe, decodes cleanly and holds exactly the
    frames the job reports: 4 s of 25 fps video in all."""
    from tests.rtsp.fake_camera import FakeCamera, LockedStream, clip_video_frames
    from tests.rtsp.test_skipped_audio import HEAD, UNMUXABLE, VIDEO

    frames = await trio.to_thread.run_sync(clip_video_frames, media_clip.path, 6 * FPS)

    async def after_play(stream: LockedStream) -> None:
        await stream.send_all(b"".join(frames))
        await trio.sleep_forever()  # a live camera: the job ends the session

    bad, _ = UNMUXABLE["24 channels"]
    camera = FakeCamera(sdp=HEAD + VIDEO + bad, after_play=after_play)
    async with trio.open_nursery() as servers:
        await servers.start(camera.serve)
        with trio.fail_after(40):
            body = {"streams": [camera.url], "duration": 4, "segment_seconds": 2, "format": "mp4"}
            job_id = (await client.post("/collect", json=body)).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert job["status"] == "completed", job
    (source,) = job["sources"]
    assert source["errors"] == [] and source["attempts"] == 1
    assert camera.setup_channels() == {"trackID=0": 0}
    assert [seg["codec"] for seg in source["segments"]] == ["h264", "h264"]
    frames_seen = 0
    for seg in source["segments"]:
        path = Path(seg["path"])
        info = await trio.to_thread.run_sync(probe, path)
        assert [(s.codec_type, s.codec_name, s.nb_read_frames) for s in info.streams] == [
            ("video", "h264", seg["frames"])]
        assert await trio.to_thread.run_sync(decode_errors, path) == ""
        frames_seen += seg["frames"]
    assert frames_seen == 4 * FPS
    assert native_rtsp[0].statistics().tracks_skipped == 1


async def test_job_fails_a_camera_whose_video_cannot_be_described(native_rtsp, collector, client):
    """The same camera with an H.264 SPS that cannot be parsed: leaving unmuxable audio out
    never hides a video failure. The source fails after its one attempt with reason `codec`
    (the gap's reason, the error's text), and no segment is written."""
    from tests.rtsp.fake_camera import FakeCamera, LockedStream, video_frames
    from tests.rtsp.test_skipped_audio import HEAD, UNMUXABLE, VIDEO

    async def after_play(stream: LockedStream) -> None:
        await stream.send_all(b"".join(video_frames(10, sps=bytes.fromhex("674d40"))))
        await trio.sleep_forever()

    bad, _ = UNMUXABLE["24 channels"]
    camera = FakeCamera(sdp=HEAD + VIDEO + bad, after_play=after_play)
    async with trio.open_nursery() as servers:
        await servers.start(camera.serve)
        with trio.fail_after(40):
            body = {"streams": [camera.url], "duration": 4, "segment_seconds": 2,
                    "retry": {"max_attempts": 1}}
            job_id = (await client.post("/collect", json=body)).json()["job_id"]
            job = await wait_job(client, job_id)
        servers.cancel_scope.cancel()
    assert job["status"] == "failed", job
    (source,) = job["sources"]
    assert source["status"] == "failed" and source["segments"] == []
    assert [gap["reason"] for gap in source["gaps"]] == ["codec"]
    assert "cannot parse the h264 SPS" in job["error"], job["error"]
