"""Which SDP media we record, and how: a depacketizer per track and its `StreamInfo` for the muxers.

A `Track` turns the RTP packets of one interleaved channel into `MediaPacket`s: timestamps are the
stream's RTP clock (time base 1/clock rate) counted from the session's start (the `rtptime` of the
PLAY response's RTP-Info, else the track's first packet), so tracks of one session line up. Each
packet is held back until the next one of its track arrives, which gives it its duration (G.711,
whose packets know their own length, goes out at once: `SampleTrack`).

RTP timestamps are presentation times. A video stream whose SPS says it reorders frames
(B-frames: max_num_reorder_frames R > 0) gets decoding times: the decoding time of the i-th unit
is the (R+1)-th largest presentation time among the first i units and R made-up ones spaced a
frame apart before the first, i.e. the i-th presentation time once all that precede it have
arrived, less R frames. It never decreases, and it is never after the presentation time while
the stream reorders no more than its SPS says. Without reordering it is the presentation time,
exactly, at the cost of one comparison per unit.

A unit that brings other parameter sets than the session was described with (a `ParameterChange`
from the depacketizer: the camera was reconfigured) ends the run: the track puts its held unit
out, notes where in the batch the new parameters start and the new `StreamInfo`
(`reconfigured`), and the opener describes the session anew there (`sink.opened`). Before the
session is first described, the opener starts it at the last such place instead: what came before
was under parameter sets that are gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from heapq import heappushpop
from itertools import pairwise
from typing import Protocol

from collector.errors import UnsupportedSource
from collector.media.packets import MediaPacket, StreamInfo
from collector.rtsp import templates
from collector.rtsp.aac import AacConfig, AacDepacketizer
from collector.rtsp.g711 import ENCODINGS as G711
from collector.rtsp.g711 import G711Depacketizer
from collector.rtsp.h264 import MAX_REORDER, H264Depacketizer, SpsInfo, parse_sps
from collector.rtsp.h265 import H265Depacketizer
from collector.rtsp.h265 import parse_sps as parse_h265_sps
from collector.rtsp.nal_units import NalDepacketizer
from collector.rtsp.rtp import (
    SEQUENCE_AND_TIMESTAMP,
    AccessUnit,
    ParameterChange,
    RtpError,
    RtpPacket,
    RtpTrack,
    parse_rtp,
    signed32,
)
from collector.rtsp.sdp import Media

SUPPORTED = {("video", "H264"), ("video", "H265"), ("audio", "MPEG4-GENERIC"), ("audio", "PCMU"),
             ("audio", "PCMA")}
DEFAULT_FPS = 25  # a frame's length for made-up decoding times when nothing tells the rate
MEASURED_UNITS = MAX_REORDER + 2  # presentation times kept to measure a rate nothing tells


class Depacketizer(Protocol):
    dropped_units: int

    def push(self, pkt: RtpPacket, timestamp: int, lost: int) -> list[AccessUnit]: ...

    def push_payload(self, payload: bytes, marker: bool, timestamp: int, lost: int
                     ) -> list[AccessUnit]: ...

    def flush(self) -> list[AccessUnit]: ...


def supported(media: Media) -> bool:
    if (media.kind, media.encoding) not in SUPPORTED or media.clock_rate <= 0:
        return False
    if media.encoding == "MPEG4-GENERIC":
        return media.fmtp.get("mode", "").lower() == "aac-hbr" and bool(media.fmtp.get("config"))
    if media.encoding == "H265":
        return media.fmtp.get("sprop-max-don-diff", "0") == "0"  # no DONL fields
    return True


@dataclass(slots=True)
class Track:
    index: int  # StreamInfo.index: the track's position in Session.tracks (set-up tracks only)
    media: Media
    url: str  # the track's control URL
    depacketizer: Depacketizer
    rtp: RtpTrack = field(default_factory=RtpTrack)
    origin: int | None = None  # extended RTP time of the session's start
    sender_report: tuple[float, int] | None = None  # the first RTCP SR: (NTP seconds, RTP time)
    _first: tuple[int, int] | None = None  # the first packet's (32-bit, extended) RTP time
    resync_dropped: int = 0  # units dropped because a sync moved this track's clock back
    # Where in the batch new parameters start, for the opener, with the new StreamInfo (None
    # while the session is not yet described: what comes before cannot be described any more).
    reconfigured: list[tuple[int, StreamInfo | None]] = field(default_factory=list)
    _held: AccessUnit | None = None
    _held_dts: int = 0
    _last_duration: int = 0
    _last_pts: int | None = None
    _time_base: Fraction | None = None
    # Decoding times of a reordered stream: the R+1 largest presentation times so far, a heap
    # (empty: start at the next unit); None when decoding order is presentation order.
    _reorder: list[int] | None = None
    reorder_depth: int = 0  # R, from the SPS
    _frame_ticks: int = 0  # a frame's length, for the made-up times before the first unit
    _first_shown: list[int] = field(default_factory=list)  # the first units' presentation times
    _described: bytes | None = None  # the extradata the session was last described with

    @classmethod
    def create(cls, index: int, media: Media, url: str) -> Track:
        if media.encoding in G711:
            return SampleTrack(index, media, url, G711Depacketizer(media.encoding))
        if media.encoding == "H264":
            dep: Depacketizer = H264Depacketizer.from_fmtp(media.fmtp)
        elif media.encoding == "H265":
            dep = H265Depacketizer.from_fmtp(media.fmtp)
        else:
            dep = AacDepacketizer(AacConfig.from_fmtp(media.fmtp))
        track = cls(index, media, url, dep)
        track._configure_reorder()  # from the SDP's SPS, if it has one
        return track

    @property
    def time_base(self) -> Fraction:
        if self._time_base is None:  # made once: a Fraction per packet is measurable
            self._time_base = Fraction(1, self.media.clock_rate)
        return self._time_base

    def set_origin(self, rtptime: int) -> None:
        """The RTP time the PLAY response says the session starts at (RTP-Info)."""
        self.origin = rtptime

    def push(self, pkt: RtpPacket, out: list[MediaPacket]) -> None:
        if pkt.payload_type != self.media.payload_type:
            self.rtp.dropped += 1  # not the format we set up (FEC, comfort noise, ...)
            return
        self._take(pkt.sequence, pkt.timestamp, pkt.payload, pkt.marker, out)

    def push_rtp(self, data: bytes, out: list[MediaPacket]) -> bool:
        """`push` straight from an RTP packet's bytes; False when they are not RTP.

        Called for every packet: the usual header (version 2, no padding, extension or CSRCs,
        first byte 0x80) is read in place; anything else goes through `parse_rtp`.
        """
        if len(data) < 12 or data[0] != 0x80:
            try:
                pkt = parse_rtp(data)
            except RtpError:
                return False
            self.push(pkt, out)
            return True
        b1 = data[1]
        if b1 & 0x7F != self.media.payload_type:
            self.rtp.dropped += 1
            return True
        sequence, timestamp = SEQUENCE_AND_TIMESTAMP.unpack_from(data, 2)
        self._take(sequence, timestamp, data[12:], b1 >= 0x80, out)
        return True

    def _take(self, sequence: int, rtp_time: int, payload: bytes, marker: bool,
              out: list[MediaPacket]) -> None:
        rtp = self.rtp
        if sequence == rtp._next_seq and rtp_time == rtp._last_ts:  # the next packet of a unit
            rtp._next_seq = (sequence + 1) & 0xFFFF
            rtp.received += 1
            lost, timestamp = 0, rtp._ext_ts
        else:
            accepted = rtp.accept_header(sequence, rtp_time)
            if accepted is None:
                return
            lost, timestamp = accepted
        if self._first is None:
            self._first = (rtp_time, timestamp)
            # RTP-Info gave a 32-bit rtptime: put it on the extended clock; else start here.
            self.origin = timestamp if self.origin is None else self.extend(self.origin)
        units = self.depacketizer.push_payload(payload, marker, timestamp, lost)
        if units:
            for unit in units:
                self._emit(unit, out)

    def extend(self, rtp_time: int) -> int:
        """A 32-bit RTP time near the start of the session, on this track's extended clock."""
        assert self._first is not None
        first32, first = self._first
        return first + signed32(rtp_time - first32)

    def wallclock_of(self, timestamp: int) -> float | None:
        """The sender's wallclock at extended RTP time `timestamp`, once a sender report came."""
        if self.sender_report is None or self._first is None:
            return None
        ntp, rtp_time = self.sender_report
        return ntp + (timestamp - self.extend(rtp_time)) / self.media.clock_rate

    def timestamp_at(self, wallclock: float) -> int | None:
        """The extended RTP time of a sender wallclock instant (the inverse of `wallclock_of`)."""
        if self.sender_report is None or self._first is None:
            return None
        ntp, rtp_time = self.sender_report
        return self.extend(rtp_time) + round((wallclock - ntp) * self.media.clock_rate)

    def flush(self, out: list[MediaPacket]) -> None:
        """Hand out the held-back unit (the session ends; an unfinished unit stays unfinished)."""
        held, self._held = self._held, None
        if held is not None:
            self._packet(held, self._held_dts, self._last_duration, out)

    def _emit(self, unit: AccessUnit, out: list[MediaPacket]) -> None:
        """Hold `unit` back, and put out the one held before it (per unit: keep it lean)."""
        if type(unit) is ParameterChange:
            self._parameters_changed(out)
        if len(self._first_shown) < MEASURED_UNITS:
            self._first_shown.append(unit.timestamp)
        heap = self._reorder
        if heap is None:
            dts = unit.timestamp
        else:
            dts = self._decoding_time(heap, unit.timestamp)
        held, held_dts = self._held, self._held_dts
        self._held, self._held_dts = unit, dts
        if held is None:
            return
        duration = dts - held_dts  # the presentation time step when nothing is reordered
        if duration > 0:
            self._last_duration = duration
        else:
            duration = 0
        self._packet(held, held_dts, duration, out)

    def _decoding_time(self, heap: list[int], pts: int) -> int:
        if not heap:  # the first unit: R made-up frames before it
            step, depth = self._frame_ticks, self.reorder_depth
            heap += [pts - k * step for k in range(depth, -1, -1)]  # ascending: a heap
            return heap[0]
        heappushpop(heap, pts)  # keeps the R+1 largest
        return heap[0]

    def _packet(self, unit: AccessUnit, dts: int, duration: int, out: list[MediaPacket]) -> None:
        origin = self.origin
        assert origin is not None
        ts = unit.timestamp - origin
        if self._last_pts is not None and ts <= self._last_pts and self.media.kind == "audio":
            self.resync_dropped += 1  # a sync moved this clock back: never repeat time
            return
        self._last_pts = ts
        out.append(MediaPacket(self.index, unit.data, ts, dts - origin, duration, unit.keyframe,
                               self.time_base))

    def _parameters_changed(self, out: list[MediaPacket]) -> None:
        """The next unit brings new parameter sets: the run under the old ones ends before it."""
        held, self._held = self._held, None
        if held is not None:
            self._packet(held, self._held_dts, self._last_duration, out)
        self._configure_reorder()
        dep = self.depacketizer
        assert isinstance(dep, NalDepacketizer)
        if self._described is None:  # before the session is described: where the opener starts
            self.reconfigured.append((len(out), None))
        elif dep.extradata != self._described:
            self.reconfigured.append((len(out), self.info()))

    def _configure_reorder(self) -> None:
        """Decoding times from the current SPS's reorder depth, starting at the next unit."""
        self._reorder, self.reorder_depth = None, 0
        dep = self.depacketizer
        if not isinstance(dep, NalDepacketizer) or dep.sps is None:
            return
        try:
            _, sps, fps = self._video()
        except UnsupportedSource:  # `info()` will say so
            return
        if not sps.reorder:
            return
        self.reorder_depth = sps.reorder
        rate = self.media.clock_rate
        self._frame_ticks = max(round(rate / fps) if fps else rate // DEFAULT_FPS, 1)
        self._reorder = []

    def ready(self) -> bool:
        """Do we know enough to describe this track?

        Video needs its parameter sets and its frame rate: from the SDP, the SPS, or else the
        spacing of its first frames in presentation order (the muxers take a rate; PyAV would
        say 24 fps), see `_measured_fps`.
        """
        dep = self.depacketizer
        if not isinstance(dep, NalDepacketizer):
            return True
        return dep.extradata is not None and self._video()[2] is not None

    def _video(self) -> tuple[str, SpsInfo, float | None]:
        dep = self.depacketizer
        assert isinstance(dep, H264Depacketizer | H265Depacketizer) and dep.sps is not None
        codec, parse = (("h264", parse_sps) if isinstance(dep, H264Depacketizer)
                        else ("hevc", parse_h265_sps))
        try:
            sps = parse(dep.sps)
        except (IndexError, ValueError):
            raise UnsupportedSource(f"cannot parse the {codec} SPS", reason="codec") from None
        fps = self.media.framerate or sps.fps or self._measured_fps(sps.reorder)
        return codec, sps, fps

    def _measured_fps(self, reorder: int) -> float | None:
        """The frame rate from the smallest step between the presentation times of the first
        units, once R + 2 of them came (R: the reorder depth; I0 P4 B2 b1 for R = 2, I0 P3 B1 for
        R = 1, I0 P1 without reordering: two frames shown one after the other among them).

        Not from the decoding times: a reordered stream's first ones are made up a default frame
        apart (`_decoding_time`), and an H.265 SPS never gives the rate (`h265.parse_sps`). An
        H.264 SPS without a VUI says neither rate nor reorder depth, which is then the decoded
        picture buffer's size (`h264.default_reorder`, up to 16): such a session is described
        up to 18 frames after its start (its packets wait, none is lost).
        """
        shown = self._first_shown
        if len(shown) < reorder + 2:
            return None
        step = min((b - a for a, b in pairwise(sorted(shown)) if b > a), default=0)
        return self.media.clock_rate / step if step else None

    def info(self) -> StreamInfo:
        """The StreamInfo (with a template) the segment writers need; call once `ready()`."""
        dep, tb = self.depacketizer, self.time_base
        if isinstance(dep, NalDepacketizer):
            codec, sps, fps = self._video()
            holder = templates.open_holder()
            template = templates.video_template(holder, codec, sps.width, sps.height, fps)
            self._described = dep.extradata
            return StreamInfo(index=self.index, kind="video", codec=codec, time_base=tb,
                              width=sps.width, height=sps.height, extradata=dep.extradata,
                              template=template)
        if isinstance(dep, G711Depacketizer):
            channels = self.media.channels
            template = templates.audio_template(self.media.clock_rate, channels, PCM)
            return StreamInfo(index=self.index, kind="audio", codec=PCM, time_base=tb,
                              sample_rate=self.media.clock_rate, template=template)
        assert isinstance(dep, AacDepacketizer)
        channels = dep.config.channels() or self.media.channels
        template = templates.audio_template(self.media.clock_rate, channels)
        return StreamInfo(index=self.index, kind="audio", codec="aac", time_base=tb,
                          sample_rate=self.media.clock_rate, extradata=dep.config.config,
                          template=template)


PCM = "pcm_s16le"  # what G.711 is expanded to (see `g711`)


@dataclass(slots=True)
class SampleTrack(Track):
    """G.711: a unit is a packet's samples, so it goes out at once, its duration its sample count
    (a lost packet leaves a gap rather than a longer packet)."""

    def _emit(self, unit: AccessUnit, out: list[MediaPacket]) -> None:
        self._packet(unit, unit.timestamp, len(unit.data) // (2 * self.media.channels), out)
