"""An audio track no muxer takes (AAC of more than 8 channels, a rate the AAC template refuses) is
left out like a codec we cannot read: never set up, while the video and any other audio are
recorded. Video that cannot be described still fails the session."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import trio

from collector.errors import SourceEnded, UnsupportedSource
from collector.media.packets import MediaPacket, StreamInfo
from collector.media.segments import FORMATS
from collector.rtsp.opener import RtspOpener
from collector.rtsp.sdp import parse_sdp
from collector.rtsp.session import choose_tracks
from tests.media.probe import packets, probe
from tests.rtsp.fake_camera import (
    RTCP_SENDER_REPORT,
    FakeCamera,
    LockedStream,
    frame_bytes,
    record_until_end,
    video_frames,
)
from tests.rtsp.packets import aac_payload, rtp
from tests.rtsp.test_protocol import Sink
from tests.rtsp.test_real_streams import Recorders

CEILING = 15  # seconds: no test here may take longer
FRAMES = 10

HEAD = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=fake\r\nt=0 0\r\na=control:*\r\n"
VIDEO = ("m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
         "a=fmtp:96 packetization-mode=1\r\na=control:trackID=0\r\n")


def aac(rate: int, channels: int, config: str, control: str, pt: int = 97) -> str:
    return (f"m=audio 0 RTP/AVP {pt}\r\na=rtpmap:{pt} MPEG4-GENERIC/{rate}/{channels}\r\n"
            f"a=fmtp:{pt} streamtype=5;profile-level-id=1;mode=AAC-hbr;config={config};"
            f"sizelength=13;indexlength=3;indexdeltalength=3\r\na=control:{control}\r\n")


# AudioSpecificConfigs (AAC-LC). 22.2 is channelConfiguration 13, not one of the 1-7 we map, so
# the rtpmap's 24 channels count; 90 kHz has no sampling frequency index (15: explicit, 24 bits).
UNMUXABLE = {
    "24 channels": (aac(48000, 24, "11E8", "trackID=1"), "24 audio channels (at most 8)"),
    "90 kHz": (aac(90000, 2, "1780AFC810", "trackID=1"), "aac audio at 90000 Hz with 2 channels"),
}
MONO = aac(48000, 1, "1188", "trackID=2", pt=98)  # 48 kHz mono: what the muxers take


def test_an_audio_track_no_muxer_takes_is_left_out_of_the_tracks_with_its_reason():
    """Video, an unmuxable AAC track, a mono AAC track: the video and the mono track are chosen
    and numbered 0 and 1 (a stream index is a track's position: the opener's description is a
    tuple in that order); the unmuxable one is skipped with the template's refusal; both kept
    tracks can be described."""
    for bad, reason in UNMUXABLE.values():
        tracks, skipped = choose_tracks(parse_sdp(HEAD + VIDEO + bad + MONO), "rtsp://cam/live")
        assert [(t.index, t.media.kind, t.url) for t in tracks] == [
            (0, "video", "rtsp://cam/live/trackID=0"), (1, "audio", "rtsp://cam/live/trackID=2")]
        ((position, stream, said),) = [(s.position, s.stream, s.reason) for s in skipped]
        assert (position, stream) == (1, "audio/MPEG4-GENERIC")
        assert said.startswith(reason), said
        audio = tracks[1].info()
        assert (audio.index, audio.codec, audio.sample_rate) == (1, "aac", 48000)


def test_g711_of_more_channels_than_a_muxer_takes_is_left_out_too():
    """G.711 goes through the same template check: 10 channels of PCMU are not set up."""
    pcmu = "m=audio 0 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000/10\r\na=control:trackID=1\r\n"
    tracks, skipped = choose_tracks(parse_sdp(HEAD + VIDEO + pcmu), "rtsp://cam/live")
    assert [t.media.kind for t in tracks] == ["video"]
    assert [(s.stream, s.reason) for s in skipped] == [
        ("audio/PCMU", "10 audio channels (at most 8)")]


def test_a_session_whose_only_audio_is_unmuxable_and_no_video_is_refused():
    """Skipping the audio does not make an audio-only SDP recordable: no video stays `no_video`."""
    bad, _ = UNMUXABLE["24 channels"]
    with pytest.raises(UnsupportedSource) as info:
        choose_tracks(parse_sdp(HEAD + bad), "rtsp://cam/live")
    assert info.value.reason == "no_video"


def by_frame(interleaved: list[bytes]) -> list[bytes]:
    """Interleaved RTP packets joined a frame each (a frame ends at its marked packet)."""
    frames, current = [], b""
    for packet in interleaved:
        current += packet
        if packet[5] & 0x80:  # after `$`, the channel and the length: RTP's marker bit
            frames.append(current)
            current = b""
    return frames


class RecordingSink(Sink):
    """The protocol tests' sink, recording every session into a segment per format as a job
    does (a `Recorder` each)."""

    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.recorders = Recorders(folder)

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False) -> None:
        super().opened(streams, reconfigured)
        self.recorders.opened(streams)

    def packets(self, batch: list[MediaPacket]) -> None:  # type: ignore[override]
        super().packets(batch)
        self.recorders.packets(batch)


@pytest.mark.parametrize("refusal", list(UNMUXABLE))
async def test_a_camera_with_unmuxable_audio_is_recorded_as_video_only(
        refusal: str, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    """A camera announcing H.264 and an AAC track no muxer takes, and sending the audio's RTP
    and sender reports on channels 2-3 although they were never set up (a camera that ignores
    SETUP). The session opens with the video alone (index 0); only the video was set up; the
    audio's packets are dropped unread (not counted as RTP, their RTCP not taken) and no
    receiver report goes to channel 3; the skip is logged once with its reason and counted.
    In mp4, mkv and ts the segment holds one stream, H.264 ("h264", not "h264+aac"), with
    every frame sent."""
    caplog.set_level(logging.INFO, logger="collector.rtsp.opener")
    bad, reason = UNMUXABLE[refusal]
    video = video_frames(FRAMES)
    audio = [frame_bytes(2, rtp(i, 1024 * i, aac_payload([bytes([i]) * 20]), marker=True,
                                pt=97)) for i in range(FRAMES)]

    async def after_play(stream: LockedStream) -> None:
        # a frame every 0.1 s: the read loop, and so the report timer (0.3 s), runs ~1 s
        for frame, sound in zip(by_frame(video), audio, strict=True):
            await stream.send_all(frame + sound + frame_bytes(3, RTCP_SENDER_REPORT))
            await trio.sleep(0.1)
        await stream.aclose()

    camera = FakeCamera(sdp=HEAD + VIDEO + bad, after_play=after_play)
    sink = RecordingSink(tmp_path)
    opener = RtspOpener(io_timeout_s=2.0, stall_timeout_s=3.0, rtcp_interval_s=0.3,
                        batch_seconds=0.1)
    error = await record_until_end(camera, opener, sink, ceiling=CEILING)
    sink.recorders.stop()

    assert isinstance(error, SourceEnded), error
    assert [path for path, (_, m, _) in zip(camera.targets, camera.requests, strict=True)
            if m == "SETUP"] == ["/live/trackID=0"]
    (streams,) = sink.streams
    assert [(s.index, s.kind, s.codec) for s in streams] == [(0, "video", "h264")]
    assert {p.stream for p in sink.all} == {0} and len(sink.all) == FRAMES
    stats = opener.statistics()
    assert stats.tracks_skipped == 1
    assert stats.rtp_packets == len(video) and stats.rtcp_packets == 0
    ours = [channel for _, channel, _ in camera.interleaved]
    assert ours and set(ours) == {1}
    skips = [r.getMessage() for r in caplog.records if "rtsp.track_skipped" in r.getMessage()]
    assert len(skips) == 1, skips
    assert skips[0].startswith(f"rtsp.track_skipped url={camera.url} media=1 "
                               f"stream=audio/MPEG4-GENERIC reason={reason}"), skips[0]

    for fmt in FORMATS:
        (segment,) = sink.recorders.results[fmt]
        assert (segment.codec, segment.frames, segment.reason) == ("h264", FRAMES, "end"), fmt
        info = await trio.to_thread.run_sync(probe, segment.path, False)
        assert [(s.codec_type, s.codec_name) for s in info.streams] == [("video", "h264")], fmt
        assert len(await trio.to_thread.run_sync(packets, segment.path)) == FRAMES, fmt


async def test_the_other_audio_track_is_recorded_beside_the_video(tmp_path: Path):
    """Video, an unmuxable AAC track, then a mono AAC track; the camera sends what was set up,
    on the channels it was set up on. The mono track is set up second (channels 2-3), opens as
    stream 1, and every one of its packets arrives as stream 1 at its RTP time; the mp4 and mkv
    segments hold the video and that audio ("h264+aac"); every video frame is in each file."""
    bad, _ = UNMUXABLE["24 channels"]

    async def after_play(stream: LockedStream) -> None:
        channels = camera.setup_channels()
        assert channels == {"trackID=0": 0, "trackID=2": 2}
        audio = [frame_bytes(channels["trackID=2"], rtp(i, 1024 * i, aac_payload(
            [bytes([i]) * 20]), marker=True, pt=98)) for i in range(FRAMES)]
        await stream.send_all(b"".join(video_frames(FRAMES)) + b"".join(audio))
        await stream.aclose()

    camera = FakeCamera(sdp=HEAD + VIDEO + bad + MONO, after_play=after_play)
    sink = RecordingSink(tmp_path)
    error = await record_until_end(camera, RtspOpener(stall_timeout_s=3.0), sink,
                                   ceiling=CEILING)
    sink.recorders.stop()

    assert isinstance(error, SourceEnded), error
    (streams,) = sink.streams
    assert [(s.index, s.kind, s.codec) for s in streams] == [(0, "video", "h264"),
                                                              (1, "audio", "aac")]
    assert [p.pts for p in sink.all if p.stream == 1] == [1024 * i for i in range(FRAMES)]
    assert len([p for p in sink.all if p.stream == 0]) == FRAMES
    for fmt in ("mp4", "mkv"):
        (segment,) = sink.recorders.results[fmt]
        assert (segment.codec, segment.frames) == ("h264+aac", FRAMES), fmt
        info = await trio.to_thread.run_sync(probe, segment.path, False)
        assert [(s.codec_type, s.codec_name) for s in info.streams] == [("video", "h264"),
                                                                        ("audio", "aac")], fmt
        assert len(await trio.to_thread.run_sync(packets, segment.path, "v")) == FRAMES, fmt


async def test_video_that_cannot_be_described_still_fails_the_session():
    """The same camera (video and unmuxable audio) with an SPS that cannot be parsed: skipping
    the audio leaves the video's failure alone. The session fails with `codec` before it is
    ever described; nothing is handed to the sink."""
    bad, _ = UNMUXABLE["24 channels"]

    async def after_play(stream: LockedStream) -> None:
        await stream.send_all(b"".join(video_frames(FRAMES, sps=bytes.fromhex("674d40"))))
        await trio.sleep_forever()

    camera = FakeCamera(sdp=HEAD + VIDEO + bad, after_play=after_play)
    sink = Sink()
    error = await record_until_end(camera, RtspOpener(stall_timeout_s=3.0), sink,
                                   ceiling=CEILING)
    assert isinstance(error, UnsupportedSource), error
    assert error.reason == "codec" and "cannot parse the h264 SPS" in str(error)
    assert sink.streams == [] and sink.all == []
