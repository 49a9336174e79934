"""The RTSP client against the real GStreamer server (tests/media): what it records must play, and
match what `ffmpeg -c copy` records from the same server, frame for frame."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from fractions import Fraction
from functools import partial
from itertools import pairwise
from pathlib import Path

import pytest
import trio

from collector.errors import SourceEnded, SourceUnavailable
from collector.media.packets import MediaPacket, StreamInfo
from collector.media.segments import SegmentWriter
from collector.rtsp.opener import RtspOpener
from tests.media.access_units import access_units
from tests.media.probe import count_frames, decode_errors, packets, probe
from tests.media.servers import serve_rtsp

FPS, SECONDS, GOP = 25, 12, 50
CEILING = 45


class Sink:
    def __init__(self) -> None:
        self.streams: tuple[StreamInfo, ...] = ()
        self.packets_: list[MediaPacket] = []
        self.batches = 0

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False) -> None:
        assert not self.streams, "opened twice in one session"
        self.streams = streams

    def packets(self, batch) -> None:  # type: ignore[no-untyped-def]
        self.packets_ += batch
        self.batches += 1


def write_file(path: Path, sink: Sink) -> int:
    """Mux the recorded packets from the first video key frame on, as a segment writer does."""
    fmt = path.suffix[1:]
    first = next(i for i, p in enumerate(sink.packets_) if p.stream == 0 and p.keyframe)
    writer = SegmentWriter(path, fmt, sink.streams, index=1, start_seconds=0.0)
    for pkt in sink.packets_[first:]:
        writer.write(pkt, pkt.pts or 0, pkt.dts)
    return writer.close("end").frames


def first_difference(mine: Sequence[object], ref: Sequence[object]) -> int | None:
    """Index of the first item that differs (or where the shorter one ends); None if all equal."""
    pairs = enumerate(zip(mine, ref, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(mine), len(ref)))
    return None if at == len(mine) == len(ref) else at


async def record(url: str, sink: Sink) -> SourceEnded:
    with pytest.raises(SourceEnded) as info:
        await RtspOpener(io_timeout_s=10, stall_timeout_s=10).run(url, {}, sink)
    return info.value


async def record_served(clip: Path, **serve_options: object) -> Sink:
    """Serve `clip` with the real server (`serve_rtsp` options) and record it to its end."""
    sink = Sink()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_rtsp, clip, **serve_options))
        with trio.fail_after(CEILING):
            await record(server.url(), sink)
        nursery.cancel_scope.cancel()
    return sink


async def record_beside_ffmpeg(clip: Path, theirs: Path, maps: tuple[str, ...] = ()) -> Sink:
    """Serve `clip` and record it to its end with our client while `ffmpeg -rtsp_transport tcp
    -c copy` (with `maps`) records the same path into `theirs`."""
    sink = Sink()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_rtsp, clip)
        with trio.fail_after(CEILING):
            async with trio.open_nursery() as both:
                both.start_soon(partial(
                    trio.run_process,
                    ["ffmpeg", "-nostdin", "-v", "error", "-rtsp_transport", "tcp",
                     "-i", server.url(), *maps, "-c", "copy", str(theirs)],
                    stdout=subprocess.DEVNULL,
                ))
                await record(server.url(), sink)
        nursery.cancel_scope.cancel()
    return sink


async def test_records_the_whole_clip_into_playable_files(media_clip, tmp_path: Path):
    """Every frame of the clip arrives once, in order, 1/25 s apart, key frames every 2 s, audio at
    48 kHz; the session ends with SourceEnded on the server's BYE; files muxed from our packets in
    MP4, Matroska and MPEG-TS decode cleanly with exactly the frames we wrote."""
    sink = await record_served(media_clip.path)
    video, audio = sink.streams
    assert (video.kind, video.codec, video.width, video.height) == ("video", "h264", 320, 240)
    assert (audio.kind, audio.codec, audio.sample_rate) == ("audio", "aac", 48000)
    assert audio.extradata is not None and audio.extradata[:2] == bytes.fromhex("1188")  # LC mono
    frames = [p for p in sink.packets_ if p.stream == 0]
    assert len(frames) == FPS * SECONDS
    pts = [p.pts or 0 for p in frames]
    assert {b - a for a, b in pairwise(pts)} == {3600}
    assert [i for i, p in enumerate(frames) if p.keyframe] == list(range(0, FPS * SECONDS, GOP))
    sound = [p for p in sink.packets_ if p.stream == 1]
    assert abs(len(sound) - SECONDS * 48000 / 1024) <= 2
    assert sink.batches < SECONDS * 12  # batched ~10 times a second, never per packet
    for fmt in ("mp4", "mkv", "ts"):
        path = tmp_path / f"out.{fmt}"
        written = await trio.to_thread.run_sync(write_file, path, sink)
        assert written == FPS * SECONDS
        assert await trio.to_thread.run_sync(count_frames, path) == written, fmt
        info = await trio.to_thread.run_sync(probe, path)
        assert info.audio is not None and info.audio.codec_name == "aac", fmt
        assert await trio.to_thread.run_sync(decode_errors, path) == "", fmt


async def test_basic_auth_from_url_and_wrong_password(media_clip):
    """The server's Basic challenge is answered from the URL; a wrong password is `unauthorized`
    with the 401 in the message and the password nowhere in it."""
    serve = partial(serve_rtsp, media_clip.path, user="u", password="p")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve)
        with trio.fail_after(CEILING):
            sink = Sink()
            with trio.move_on_after(2):
                await RtspOpener().run(server.url(), {}, sink)
            assert sink.streams and sink.packets_
            bad = f"rtsp://u:wrongpass@127.0.0.1:{server.port}/cam"
            with pytest.raises(SourceUnavailable) as info:
                await RtspOpener().run(bad, {}, Sink())
        nursery.cancel_scope.cancel()
    assert info.value.reason == "unauthorized"
    assert "401" in str(info.value) and "wrongpass" not in str(info.value)



async def challenges(port: int, url: str) -> list[str]:
    """The WWW-Authenticate values of the server's answer to a DESCRIBE without credentials
    (asserted to be a 401)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some()
            assert chunk, f"server closed before its answer's end: {head!r}"
            head += chunk
    status, *lines = head.partition(b"\r\n\r\n")[0].decode().split("\r\n")
    assert status.startswith("RTSP/1.0 401"), status
    return [value.strip() for name, _, value in (line.partition(":") for line in lines)
            if name.strip().lower() == "www-authenticate"]


async def test_digest_auth_from_url_and_wrong_password(media_clip, tmp_path: Path):
    """A server offering only Digest (so nothing passes through Basic): credentials from the URL
    answer its challenge and every frame of the clip is recorded; a wrong password is
    `unauthorized` with the 401 in the message and the password nowhere in it."""
    serve = partial(serve_rtsp, media_clip.path, user="u", password="p", digest=True)
    sink = Sink()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve)
        with trio.fail_after(CEILING):
            offered = await challenges(server.port, server.url(auth=False))
            await record(server.url(), sink)
            bad = f"rtsp://u:wrongpass@127.0.0.1:{server.port}/cam"
            with pytest.raises(SourceUnavailable) as info:
                await RtspOpener().run(bad, {}, Sink())
        nursery.cancel_scope.cancel()
    assert offered and all(c.startswith("Digest ") for c in offered), offered
    assert info.value.reason == "unauthorized"
    assert "401" in str(info.value) and "wrongpass" not in str(info.value)
    path = tmp_path / "out.mp4"
    assert await trio.to_thread.run_sync(write_file, path, sink) == FPS * SECONDS
    assert await trio.to_thread.run_sync(count_frames, path) == FPS * SECONDS
    assert abs(await trio.to_thread.run_sync(count_frames, path, "a")
               - SECONDS * 48000 / 1024) <= 2


async def test_same_frames_as_ffmpeg_copy(media_clip, tmp_path: Path):
    """Fidelity oracle: our client and `ffmpeg -rtsp_transport tcp -c copy` record the same server
    path at the same time; every non-key video frame has the same bytes in both MP4 files; every
    picture, key frames included, has the same slices once FFmpeg's halves of each IDR picture are
    joined again and parameter sets and SEI (repeated differently on each side) are left out;
    both hold the same number of pictures lasting the same time; and our AAC frames are the same
    bytes as a contiguous run of FFmpeg's covering all but the first second of the clip."""
    ours, theirs = tmp_path / "ours.mp4", tmp_path / "ffmpeg.mp4"
    sink = await record_beside_ffmpeg(media_clip.path, theirs, ("-map", "0:v", "-map", "0:a"))
    await trio.to_thread.run_sync(write_file, ours, sink)
    mine = await trio.to_thread.run_sync(packets, ours)
    ref = await trio.to_thread.run_sync(packets, theirs)
    mine_p = [p.data_hash for p in mine if not p.flags_keyframe]
    ref_p = [p.data_hash for p in ref if not p.flags_keyframe]
    assert len(mine_p) == FPS * SECONDS - SECONDS * FPS // GOP
    assert mine_p == ref_p
    # Frame counts: ours is the clip's. FFmpeg's parser splits each two-slice IDR picture in two
    # at the SPS/PPS GStreamer repeats before its second slice (which we drop), so its file holds
    # one extra "frame" per key frame, the first of each pair having the key frame's timestamp.
    assert len(mine) == media_clip.frames == FPS * SECONDS
    assert sum(p.flags_keyframe for p in mine) == SECONDS * FPS // GOP
    assert len(ref) - sum(p.flags_keyframe for p in ref) == len(mine) - SECONDS * FPS // GOP
    # Whole pictures, key frames too: the NAL units of each (FFmpeg's halves joined again, see
    # tests/media/access_units.py) but SEI, SPS, PPS and AUD, which each side repeats in its own
    # way; the parameter sets themselves must be the same ones.
    mine_u = await trio.to_thread.run_sync(access_units, ours)
    ref_u = await trio.to_thread.run_sync(access_units, theirs)
    assert len(mine_u) == len(ref_u) == FPS * SECONDS
    assert [u.keyframe for u in mine_u] == [u.keyframe for u in ref_u]
    at = first_difference([u.slices for u in mine_u], [u.slices for u in ref_u])
    assert at is None, f"picture {at} differs (key frame: {mine_u[at].keyframe})"
    assert {ps for u in mine_u for ps in u.parameter_sets} == {
        ps for u in ref_u for ps in u.parameter_sets}
    # Durations. Ours are the RTP timestamps': 1/25 s a picture, exactly. FFmpeg re-bases its
    # timestamps on every RTCP sender report (rtpdec.c), which moves them by a few 90 kHz ticks
    # (measured: 1 to 2), and had none for the first half of the first IDR picture (muxed at 0):
    # from the second picture on, the same within 1 ms each; the whole, within one frame.
    mine_d = [b.seconds - a.seconds for a, b in pairwise(mine_u)]
    ref_d = [b.seconds - a.seconds for a, b in pairwise(ref_u)]
    assert set(mine_d) == {Fraction(1, FPS)}
    off = [i for i in range(1, len(mine_d)) if abs(mine_d[i] - ref_d[i]) > Fraction(1, 1000)]
    assert not off, f"picture {off[0]} lasts {float(ref_d[off[0]])} s in FFmpeg's file"
    whole = [u[-1].end - u[0].seconds for u in (mine_u, ref_u)]
    assert abs(whole[0] - whole[1]) < Fraction(1, FPS), [float(w) for w in whole]
    # AAC: ours starts at the first video key frame (and a sender report may re-align the first
    # audio frames); from there on, frame for frame what FFmpeg wrote.
    mine_a = [p.data_hash for p in await trio.to_thread.run_sync(packets, ours, "a")]
    ref_a = [p.data_hash for p in await trio.to_thread.run_sync(packets, theirs, "a")]
    assert len(mine_a) >= (SECONDS - 1) * 48000 // 1024
    assert any(ref_a[i : i + len(mine_a)] == mine_a for i in range(len(ref_a) - len(mine_a) + 1))


async def test_joins_a_live_shared_stream_mid_way(media_clip):
    """A live (looping, shared) server joined mid-stream: the first key frame arrives within a
    GOP; audio and video end up lined up by the RTCP sender reports (this server's RTP-Info is
    0.7 s off between them); timestamps keep rising across the clip's loop; nothing is lost,
    while our receiver reports go to the server every 5 s."""
    sink = Sink()
    opener = RtspOpener()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(partial(serve_rtsp, media_clip.path, shared=True))
        with trio.fail_after(CEILING):
            await trio.sleep(1.3)  # the pipeline is running: we join in the middle of a GOP
            with trio.move_on_after(SECONDS + 2):  # long enough to cross the clip's loop point
                await opener.run(server.url(), {}, sink)
        nursery.cancel_scope.cancel()
    video = [p for p in sink.packets_ if p.stream == 0]
    audio = [p for p in sink.packets_ if p.stream == 1]
    first_key = next(p for p in video if p.keyframe)
    assert first_key.seconds - video[0].seconds <= GOP / FPS
    assert abs(video[-1].seconds - audio[-1].seconds) < 0.1
    pts = [p.pts or 0 for p in video]
    assert all(b > a for a, b in pairwise(pts))
    assert len(video) >= FPS * SECONDS
    stats = opener.statistics()
    assert (stats.rtp_lost, stats.rtp_dropped, stats.units_dropped) == (0, 0, 0)
    assert stats.rtcp_reports_sent == 4  # at ~5 s and ~10 s, one per track: the server took them
    assert all(b.pts > a.pts for a, b in pairwise(audio))  # type: ignore[operator]


async def test_records_over_rtsps_from_gstreamer(media_clip, tmp_path: Path):
    """The GStreamer server over TLS (a certificate from a CA made for this test), Basic auth
    inside the TLS session: every frame of the clip arrives, in batches (TLS hands out one RTP
    packet per record: the reads must still be batched, ~10 a second)."""
    from collector.errors import SourceEnded
    from tests.rtsp.pki import make_pki

    pki = await trio.to_thread.run_sync(make_pki, tmp_path)
    serve = partial(serve_rtsp, media_clip.path, user="u", password="p", tls=(pki.cert, pki.key))
    sink = Sink()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve)
        assert server.url().startswith("rtsps://u:p@127.0.0.1:")
        with trio.fail_after(CEILING), pytest.raises(SourceEnded):
            opener = RtspOpener(io_timeout_s=10, stall_timeout_s=10,
                                ssl_context=pki.client_context())
            await opener.run(server.url(), {}, sink)
        nursery.cancel_scope.cancel()
    frames = [p for p in sink.packets_ if p.stream == 0]
    assert len(frames) == FPS * SECONDS
    assert {b.pts - a.pts for a, b in pairwise(frames)} == {3600}  # type: ignore[operator]
    assert sink.batches < SECONDS * 12
