"""H.265 (RFC 7798): depacketizing real x265 output, and a fake camera's H.265 stream recorded
through the whole client into files that play."""

from __future__ import annotations

import subprocess
from pathlib import Path

import av
import pytest
import trio

from collector.errors import SourceEnded
from collector.media.segments import SegmentWriter
from collector.rtsp.h265 import H265Depacketizer, parse_sps
from collector.rtsp.opener import RtspOpener
from collector.rtsp.rtp import RtpTrack, parse_rtp
from tests.media.probe import count_frames, decode_errors
from tests.rtsp.fake_camera import FakeCamera, LockedStream, frame_bytes
from tests.rtsp.packets import annex_b_nals, h265_aggregate, h265_payloads, rtp
from tests.rtsp.test_protocol import Sink

FRAMES, FPS = 50, 25
SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\na=control:*\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H265/90000\r\na=control:trackID=0\r\n"
)
SC = b"\x00\x00\x00\x01"


@pytest.fixture(scope="module")
def hevc_units(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """50 frames of 320x240 x265 (key frame every 25), as Annex-B access units."""
    path = tmp_path_factory.mktemp("hevc") / "clip.hevc"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", f"testsrc2=size=320x240:rate={FPS}", "-frames:v", str(FRAMES), "-c:v", "libx265",
         "-x265-params", "keyint=25:min-keyint=25:bframes=0:log-level=error", "-f", "hevc",
         str(path)],
        check=True,
    )
    with av.open(str(path), format="hevc") as container:
        return [bytes(p) for p in container.demux(video=0) if p.size]


def packetize(units: list[bytes], *, mtu: int = 1000) -> list[bytes]:
    """Each unit as RTP: parameter sets in one AP, big NAL units as FUs, marker on the last."""
    out, seq = [], 0
    for n, unit in enumerate(units):
        nals = annex_b_nals(unit)
        params = [x for x in nals if 32 <= (x[0] >> 1) & 0x3F <= 34]
        payloads = [h265_aggregate(params)] if params else []
        for nal in nals:
            if nal not in params:
                payloads += h265_payloads(nal, mtu)
        for i, payload in enumerate(payloads):
            out.append(rtp(seq, 3600 * n, payload, marker=i == len(payloads) - 1))
            seq += 1
    return out


def test_units_come_out_byte_exact(hevc_units: list[bytes]):
    """AP and FU packets reassemble into the encoder's own access units (as Annex-B NAL units);
    IRAP pictures are key frames; the SPS gives the picture size."""
    dep, track = H265Depacketizer(), RtpTrack()
    units = []
    for raw in packetize(hevc_units):
        pkt = parse_rtp(raw)
        lost, ts = track.accept(pkt) or (0, 0)
        units += dep.push(pkt, ts, lost)
    assert len(units) == FRAMES
    for got, want in zip(units, hevc_units, strict=True):
        assert annex_b_nals(got.data) == annex_b_nals(want)
    assert [i for i, u in enumerate(units) if u.keyframe] == [0, 25]
    assert dep.sps is not None and parse_sps(dep.sps).width == 320
    assert (parse_sps(dep.sps).height, dep.dropped_units) == (240, 0)
    assert dep.extradata is not None and dep.extradata.count(SC) == 3  # VPS, SPS, PPS


async def test_h265_camera_records_into_playable_files(hevc_units: list[bytes], tmp_path: Path):
    """Parameter sets only in-band (no sprop in the SDP): the client waits for them, then opens
    with an hevc stream; MP4, Matroska and MPEG-TS files of its packets decode every frame."""
    async def play(stream: LockedStream) -> None:
        await stream.send_all(b"".join(frame_bytes(0, p) for p in packetize(hevc_units)))
        await stream.aclose()

    sink = Sink()
    camera = FakeCamera(sdp=SDP, after_play=play)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(camera.serve)
            with pytest.raises(SourceEnded):
                await RtspOpener().run(camera.url, {}, sink)
            nursery.cancel_scope.cancel()
    ((info,),) = sink.streams
    assert (info.codec, info.width, info.height) == ("hevc", 320, 240)
    assert len(sink.all) == FRAMES
    for fmt in ("mp4", "mkv", "ts"):
        path = tmp_path / f"out.{fmt}"
        writer = SegmentWriter(path, fmt, (info,), index=1, start_seconds=0.0)
        for pkt in sink.all:
            writer.write(pkt, pkt.pts or 0, pkt.dts)
        writer.close("end")
        assert count_frames(path) == FRAMES, fmt
        assert decode_errors(path) == "", fmt
