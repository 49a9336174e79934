"""Prove the media test infrastructure: real RTSP (TCP/UDP, shared loop, auth) and HTTP sources."""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.media.clips import ClipInfo
from tests.media.probe import count_frames, decode_errors, packets, probe
from tests.media.servers import serve_http, serve_rtsp

pytestmark = pytest.mark.trio

GOP_FRAMES = 50  # 2 s * 25 fps
# FFmpeg's RTSP demuxer re-bases timestamps when the first RTCP SR arrives; the copy-muxer then
# warns about (and fixes) non-monotonic DTS. Harmless for these tests, so ignored.
BENIGN = re.compile(r"non monotonically increasing dts|Last message repeated")


async def ffmpeg(*args: str) -> str:
    """Run the system ffmpeg; fail with its stderr on a non-zero exit."""
    proc = await trio.run_process(
        ["ffmpeg", "-hide_banner", "-nostdin", "-y", "-v", "error", *args],
        capture_stdout=True, capture_stderr=True, check=False,
    )
    stderr = proc.stderr.decode(errors="replace")
    assert proc.returncode == 0, f"ffmpeg {' '.join(args)} failed:\n{stderr}"
    return stderr


def assert_recording(path: Path, seconds: float, fps: int = 25) -> None:
    """H.264 video with ~seconds*fps frames (+-1 GOP), AAC audio, decodable without real errors."""
    result = probe(path)
    assert result.video is not None and result.video.codec_name == "h264", result
    assert result.audio is not None and result.audio.codec_name == "aac", result
    assert result.audio.nb_read_frames and result.audio.nb_read_frames > 0
    frames = result.video.nb_read_frames or 0
    assert abs(frames - seconds * fps) <= GOP_FRAMES, f"{frames} video frames for {seconds}s"
    errors = [line for line in decode_errors(path).splitlines() if line and not BENIGN.search(line)]
    assert not errors, errors


async def test_clip_matches_request(media_clip: ClipInfo) -> None:
    """make_clip() really yields the GOP structure tests rely on (keyframe every 2 s, no B)."""
    pkts = packets(media_clip.path)
    assert len(pkts) == media_clip.frames == 300
    keys = [i for i, p in enumerate(pkts) if p.flags_keyframe]
    assert keys == list(range(0, 300, GOP_FRAMES))
    assert all(p.pts_time == p.dts_time for p in pkts)  # no B-frames: pts == dts
    assert count_frames(media_clip.path, "a") > 0


@pytest.mark.parametrize("transport", ["tcp", "udp"])
async def test_rtsp_record(media_clip: ClipInfo, tmp_path: Path, transport: str) -> None:
    """RTSP server on port 0 serves video+audio over TCP-interleaved and UDP to ffmpeg."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve_rtsp, media_clip.path)
            assert server.port > 0 and server.base_url == f"rtsp://127.0.0.1:{server.port}"
            out = tmp_path / "out.mkv"
            await ffmpeg("-rtsp_transport", transport, "-i", server.url(), "-t", "6", "-c", "copy",
                         str(out))
            nursery.cancel_scope.cancel()
    assert_recording(out, 6)


async def test_rtsp_shared_loops(media_clip: ClipInfo, tmp_path: Path) -> None:
    """--shared: two simultaneous readers, and the stream loops past the clip end (15 s of 12 s)."""
    outs = [tmp_path / "a.mkv", tmp_path / "b.mkv"]
    with trio.fail_after(45):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(serve_rtsp, media_clip.path, shared=True))
            async with trio.open_nursery() as readers:
                for out, transport in zip(outs, ["tcp", "udp"], strict=True):
                    readers.start_soon(ffmpeg, "-rtsp_transport", transport, "-i", server.url(),
                                       "-t", "15", "-c", "copy", str(out))
                    await trio.sleep(1)  # second reader joins the running shared pipeline
            nursery.cancel_scope.cancel()
    for out in outs:
        assert_recording(out, 15)
        pts = [p.pts_time for p in packets(out) if p.pts_time is not None]
        assert max(pts) > 14, "shared stream did not loop past the clip end"


async def test_rtsp_auth_and_paths(media_clip: ClipInfo, tmp_path: Path) -> None:
    """Basic auth: 401 without/with wrong credentials, plays with them, on every mount path."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(
                serve_rtsp, media_clip.path, paths=("/cam1", "/cam2"), user="admin",
                password="s3cr et"))
            for url in (server.url("/cam1", auth=False),
                        server.url("/cam1").replace("s3cr%20et", "wrong")):
                proc = await trio.run_process(
                    ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp", "-i", url,
                     "-t", "1", "-f", "null", "-"],
                    capture_stdout=True, capture_stderr=True, check=False)
                assert proc.returncode != 0 and b"401" in proc.stderr, proc.stderr
            for path in server.paths:
                out = tmp_path / f"{path.strip('/')}.mkv"
                await ffmpeg("-rtsp_transport", "tcp", "-i", server.url(path), "-t", "2",
                             "-c", "copy", str(out))
                assert count_frames(out) > 25
            nursery.cancel_scope.cancel()


async def test_http_ts_and_hls(media_ts: Path, media_hls: Path, tmp_path: Path) -> None:
    """serve_http serves real TS and HLS (playlist + segments) that ffmpeg can read."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            ts_server = await nursery.start(serve_http, media_ts.parent)
            hls_server = await nursery.start(serve_http, media_hls.parent)
            await ffmpeg("-i", ts_server.url(media_ts), "-t", "6", "-c", "copy",
                         str(tmp_path / "ts.mkv"))
            await ffmpeg("-i", hls_server.url(media_hls.name), "-t", "6", "-c", "copy",
                         str(tmp_path / "hls.mkv"))
            nursery.cancel_scope.cancel()
    assert_recording(tmp_path / "ts.mkv", 6)
    assert_recording(tmp_path / "hls.mkv", 6)
    assert probe(media_hls, count_frames=False).format_name == "hls"


async def test_servers_cancel_quickly(media_clip: ClipInfo, tmp_path: Path) -> None:
    """Cancelling the nursery stops both servers within a second, even with a client attached."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(partial(serve_rtsp, media_clip.path, shared=True))
            await nursery.start(serve_http, tmp_path)
            nursery.start_soon(ffmpeg, "-rtsp_transport", "tcp", "-i", server.url(),
                               "-f", "null", "-")
            await trio.sleep(2)
            start = trio.current_time()
            nursery.cancel_scope.cancel()
        assert trio.current_time() - start < 1.5
