"""A camera that changes its parameter sets mid-stream (reconfigured: another resolution): the
client describes the session anew before the first frame under the new ones."""

from __future__ import annotations

import trio

from collector.errors import SourceEnded
from collector.media.packets import MediaPacket, StreamInfo
from collector.rtsp.opener import RtspOpener
from tests.rtsp.fake_camera import FakeCamera, LockedStream, record_until_end, video_frames
from tests.rtsp.packets import PPS, SPS

CEILING = 10
SC = b"\x00\x00\x00\x01"
SPS_480 = bytes.fromhex("674d4015d901e0bfe5c044000003000400000300c83c58b920")  # 480x360 Main
PPS_480 = bytes.fromhex("68ebc3cb20")


class Calls:
    """A sink that keeps the order of `opened` and `packets` calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object]] = []
        self.reconfigured: list[bool] = []  # per `opened`
        self.got_packets = trio.Event()

    def opened(self, streams: tuple[StreamInfo, ...], reconfigured: bool = False) -> None:
        self.calls.append(("opened", streams))
        self.reconfigured.append(reconfigured)

    def packets(self, batch) -> None:  # type: ignore[no-untyped-def]
        self.calls.append(("packets", list(batch)))
        self.got_packets.set()

    def runs(self) -> list[tuple[StreamInfo, list[MediaPacket]]]:
        """Each description with the packets handed over under it."""
        runs: list[tuple[StreamInfo, list[MediaPacket]]] = []
        for kind, value in self.calls:
            if kind == "opened":
                runs.append((value[0], []))  # type: ignore[index]
            else:
                runs[-1][1].extend(value)  # type: ignore[arg-type]
        return runs


def switching(sink: Calls, *, wait: bool):  # type: ignore[no-untyped-def]
    """Two GOPs at 320x240 then two at 480x360, 25 fps, SPS/PPS in band at each key frame; with
    `wait`, the switch is sent once the client has handed out packets (it is described)."""
    first = video_frames(10, gop=5)
    second = video_frames(10, seq=len(first), ts=10 * 3600, gop=5, sps=SPS_480, pps=PPS_480)

    async def after_play(stream: LockedStream) -> None:
        if wait:
            await stream.send_all(b"".join(first))
            await sink.got_packets.wait()
            await stream.send_all(b"".join(second))
        else:
            await stream.send_all(b"".join(first + second))
        await stream.aclose()

    return after_play


async def record(sink: Calls, *, wait: bool) -> None:
    camera = FakeCamera(after_play=switching(sink, wait=wait))
    error = await record_until_end(camera, RtspOpener(stall_timeout_s=2.0), sink, ceiling=CEILING)
    assert isinstance(error, SourceEnded)


async def test_new_sps_mid_stream_describes_the_session_anew():
    """Two GOPs at 320x240, then the camera switches to 480x360: `opened` comes again, right
    before the key frame that carries the new SPS, with the new size and extradata; every frame
    before it went out under the old description (the last one with its full duration), and the
    same SPS repeated at each key frame opened nothing. The second description says it is one
    (`reconfigured`: the same connection, not another attempt)."""
    sink = Calls()
    await record(sink, wait=True)
    (old, before), (new, after) = sink.runs()
    assert sink.reconfigured == [False, True]
    assert (old.width, old.height, old.extradata) == (320, 240, SC + SPS + SC + PPS)
    assert (new.width, new.height, new.extradata) == (480, 360, SC + SPS_480 + SC + PPS_480)
    assert [p.pts for p in before] == [3600 * n for n in range(10)]
    assert [p.pts for p in after] == [3600 * n for n in range(10, 20)]
    assert {p.duration for p in before + after} == {3600}
    assert after[0].keyframe and after[0].data.startswith(SC + SPS_480 + SC + PPS_480)


async def test_a_change_before_the_session_is_described_starts_it_there():
    """All four GOPs in the first read (the client describes a session after a read): it is
    described once, with the parameters in force at the end of the read, and starts at the key
    frame that brought them (what came before could no longer be described)."""
    sink = Calls()
    await record(sink, wait=False)
    ((info, packets),) = sink.runs()
    assert sink.reconfigured == [False]
    assert (info.width, info.height) == (480, 360)
    assert [p.pts for p in packets] == [3600 * n for n in range(10, 20)]
    assert packets[0].keyframe and packets[0].data.startswith(SC + SPS_480)
