"""G.711 (PCMU/PCMA): expanded to 16-bit PCM exactly as FFmpeg decodes it, and recorded from a
scripted camera into files: Matroska and MP4 keep the audio, MPEG-TS leaves it out."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from collector.errors import SourceEnded
from collector.media.segments import SegmentWriter
from collector.rtsp.g711 import G711Depacketizer
from collector.rtsp.opener import RtspOpener
from tests.media.probe import packets, probe
from tests.rtsp.fake_camera import (
    FakeCamera,
    LockedStream,
    frame_bytes,
    record_until_end,
    video_frames,
)
from tests.rtsp.packets import rtp
from tests.rtsp.test_protocol import Sink

CEILING = 20
PACKETS, SAMPLES = 50, 160  # one second of 20 ms packets at 8 kHz
LAWS = {"PCMU": "mulaw", "PCMA": "alaw"}  # FFmpeg's raw format names


def sdp(encoding: str) -> str:
    """Video, then G.711 audio: PCMU as static payload type 0 (no rtpmap, as cameras send it),
    PCMA as a dynamic type named by its rtpmap."""
    audio = ("m=audio 0 RTP/AVP 0\r\n" if encoding == "PCMU"
             else "m=audio 0 RTP/AVP 97\r\na=rtpmap:97 PCMA/8000\r\n")
    return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\na=control:*\r\n"
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            "a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n"
            f"{audio}a=control:trackID=1\r\n")


def ffmpeg_decode(encoding: str, data: bytes) -> bytes:
    """FFmpeg's own G.711 decoder: the reference."""
    proc = subprocess.run(
        ["ffmpeg", "-v", "error", "-f", LAWS[encoding], "-ar", "8000", "-ac", "1", "-i", "-",
         "-f", "s16le", "-"], input=data, capture_output=True, check=True)
    return proc.stdout


def samples_of(i: int) -> bytes:
    return bytes((i * 7 + n * 13) % 256 for n in range(SAMPLES))  # every code, in time


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
def test_expansion_matches_ffmpeg_for_every_code(encoding: str) -> None:
    """All 256 codes expand to the 16-bit values FFmpeg's pcm_mulaw/pcm_alaw decoders give."""
    codes = bytes(range(256))
    dep = G711Depacketizer(encoding)
    (unit,) = dep.push_payload(codes, False, 1234, 0)
    assert (unit.timestamp, unit.keyframe) == (1234, True)
    assert unit.data == ffmpeg_decode(encoding, codes)
    assert dep.push_payload(b"", True, 1394, 0) == []


def write(path: Path, sink: Sink) -> int:
    packets = sink.all
    first = next(i for i, p in enumerate(packets) if p.stream == 0 and p.keyframe)
    writer = SegmentWriter(path, path.suffix[1:], sink.streams[0], index=1, start_seconds=0.0)
    for pkt in packets[first:]:
        writer.write(pkt, pkt.pts or 0, pkt.dts)
    return writer.close("end").frames


def audio_samples(path: Path) -> tuple[int, bytes, list[bytes]]:
    """(decoded sample count, the samples as s16le, FFmpeg's errors but the fake video's) of the
    file's audio."""
    proc = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-f",
                           "s16le", "-"], capture_output=True, check=True)
    errors = [line for line in proc.stderr.splitlines()
              if not line.startswith(b"[h264") and b"Last message repeated" not in line]
    return len(proc.stdout) // 2, proc.stdout, errors


@pytest.mark.parametrize("encoding", ["PCMU", "PCMA"])
async def test_g711_camera_recorded_into_mkv_mp4_and_ts(encoding: str, tmp_path: Path):
    """A camera with H.264 and G.711: the audio track opens as 16-bit PCM at 8 kHz; each packet
    is one unit of 160 samples at its RTP time; Matroska and MP4 files hold exactly those
    samples, decoding cleanly to what FFmpeg decodes from the camera's bytes; a .ts file leaves
    the audio out (FFmpeg would write an unreadable data stream) and keeps every video frame.
    (The fake camera's slices are not real H.264: video is counted, not decoded, here; the
    GStreamer test decodes both.)"""
    video = video_frames(5)
    sent = [samples_of(i) for i in range(PACKETS)]
    audio = [frame_bytes(2, rtp(i, SAMPLES * i, data, pt=0 if encoding == "PCMU" else 97))
             for i, data in enumerate(sent)]

    async def after_play(stream: LockedStream) -> None:
        await stream.send_all(b"".join(video + audio))
        await stream.aclose()

    camera = FakeCamera(sdp=sdp(encoding), after_play=after_play)
    sink = Sink()
    error = await record_until_end(camera, RtspOpener(stall_timeout_s=2.0), sink, ceiling=CEILING)
    assert isinstance(error, SourceEnded)
    (streams,) = sink.streams
    assert [(s.kind, s.codec, s.sample_rate) for s in streams] == [
        ("video", "h264", 0), ("audio", "pcm_s16le", 8000)]
    sound = [p for p in sink.all if p.stream == 1]
    assert [(p.pts, p.dts, p.duration) for p in sound] == [(SAMPLES * i, SAMPLES * i, SAMPLES)
                                                           for i in range(PACKETS)]
    expected = ffmpeg_decode(encoding, b"".join(sent))
    assert b"".join(p.data for p in sound) == expected
    for fmt in ("mkv", "mp4", "ts"):
        path = tmp_path / f"out.{fmt}"
        assert await trio.to_thread.run_sync(write, path, sink) == 5
        info = await trio.to_thread.run_sync(probe, path, False)
        assert len(await trio.to_thread.run_sync(packets, path)) == 5, fmt
        if fmt == "ts":
            assert [s.codec_type for s in info.streams] == ["video"]
            continue
        assert info.audio is not None and info.audio.codec_name == "pcm_s16le", fmt
        assert await trio.to_thread.run_sync(audio_samples, path) == (PACKETS * SAMPLES,
                                                                       expected, []), fmt
