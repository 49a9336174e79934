"""Access units from NAL-unit video over RTP (H.264, H.265): the part both codecs share.

A unit ends on the RTP marker bit or when the timestamp changes. A unit damaged by packet loss (or
a fragment without its start) is dropped whole and counted, never emitted half-made. Key frames
get the latest parameter sets in front of them when they do not carry their own (taken from the
stream itself or the SDP), so every segment decodes from its first frame. A unit whose parameter
sets differ from the ones known before it (the first in-band ones when the SDP had none or others,
a camera reconfigured mid-stream) comes out as a `ParameterChange`, for `tracks` to start a new
run with new extradata. Output is Annex-B. A codec subclass says how its RTP payloads carry NAL
units and which NAL types mean what.
"""

from __future__ import annotations

import base64
import binascii

from collector.rtsp.bits import BitReader
from collector.rtsp.rtp import AccessUnit, ParameterChange, RtpPacket

START_CODE = b"\x00\x00\x00\x01"
MAX_ACCESS_UNIT_BYTES = 16 * 1024 * 1024


def parse_sprop(value: str) -> list[bytes]:
    """The NAL units of a `sprop-*` fmtp value (comma-separated base64)."""
    nals = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        try:
            nals.append(base64.b64decode(item + "=" * (-len(item) % 4)))
        except (binascii.Error, ValueError):
            continue
    return [n for n in nals if n]


class NalDepacketizer:
    PARAMETER_SETS: tuple[int, ...] = ()  # NAL types of the extradata, in order
    SPS = PPS = 0  # the NAL types of sequence and picture parameter sets (PPS: several, by id)
    HEADER_BYTES = 1  # NAL unit header size
    KEY: frozenset[int] = frozenset()  # NAL types that make a unit a key frame
    KIND_SHIFT, KIND_MASK = 0, 0xFF  # a NAL unit's type is (nal[0] >> KIND_SHIFT) & KIND_MASK
    # An RTP payload whose type is in [SINGLE_LOW, SINGLE_HIGH] is one whole NAL unit; one
    # shorter than MIN_PAYLOAD bytes is not read (`_payload`, and reads.route's shortcut)
    SINGLE_LOW, SINGLE_HIGH, MIN_PAYLOAD = 0, -1, 1

    def __init__(self, parameter_sets: list[bytes] | None = None) -> None:
        self.parameter_sets: dict[int, bytes] = {}  # the latest of each type
        self._pps: dict[int, bytes] = {}  # every picture parameter set, by id
        self._parameter_kinds = frozenset(self.PARAMETER_SETS)
        self.dropped_units = 0
        self.unsupported_packets = 0
        self._nals: list[bytes] = []
        self._size = 0
        self._ts: int | None = None
        # The pieces of the NAL unit being defragmented and their size (reads.route adds to them)
        self._fu: list[bytes | memoryview] | None = None
        self._fu_size = 0
        self._damaged = False
        for nal in parameter_sets or []:
            self._remember(nal)

    # What a codec subclass provides.
    def kind(self, nal: bytes) -> int:
        raise NotImplementedError

    def is_vcl(self, kind: int) -> bool:
        raise NotImplementedError

    def _payload(self, payload: bytes) -> None:
        """Split one RTP payload into NAL units: `_add` whole ones, `_fragment` pieces."""
        raise NotImplementedError

    def push(self, pkt: RtpPacket, timestamp: int, lost: int) -> list[AccessUnit]:
        """Take one RTP packet (`lost` packets missing before it); return finished units."""
        return self.push_payload(pkt.payload, pkt.marker, timestamp, lost)

    def push_payload(self, payload: bytes, marker: bool, timestamp: int, lost: int
                     ) -> list[AccessUnit]:
        """`push` for a packet whose header the caller already read (the per-packet fast path)."""
        out: list[AccessUnit] = []
        if lost and (self._nals or self._fu is not None or self._ts == timestamp):
            self._damaged = True  # the unit in progress lost its tail or its middle
        if timestamp != self._ts and self._ts is not None:
            self._finish(out)
        self._ts = timestamp
        if payload:
            self._payload(payload)
        if marker:
            self._finish(out)
        return out

    def flush(self) -> list[AccessUnit]:
        out: list[AccessUnit] = []
        self._finish(out)
        return out

    @property
    def sps(self) -> bytes | None:
        return self.parameter_sets.get(self.SPS)

    @property
    def extradata(self) -> bytes | None:
        """Annex-B parameter sets, which the MP4 and Matroska muxers turn into avcC/hvcC (every
        picture parameter set seen, by id)."""
        sets = self.parameter_sets
        if not all(k in sets for k in self.PARAMETER_SETS):
            return None
        return b"".join([*(START_CODE + sets[k] for k in self.PARAMETER_SETS if k != self.PPS),
                         *(START_CODE + self._pps[i] for i in sorted(self._pps))])

    def _fragment(self, header: bytes | None, chunk: bytes | memoryview, end: bool) -> None:
        """One fragment of a NAL unit: `header` (the rebuilt NAL header) only on the first.

        The pieces are kept as they came and joined once, when the NAL unit is whole: growing
        one buffer piece by piece copied a big key frame over and over as it grew."""
        if header is not None:
            if self._fu is not None:
                self._damaged = True  # the previous fragment never ended
            self._fu, self._fu_size = [header], len(header)
        elif self._fu is None:
            self._damaged = True  # a continuation whose start we never saw
            return
        self._fu.append(chunk)
        self._fu_size += len(chunk)
        if self._fu_size > MAX_ACCESS_UNIT_BYTES:  # a fragment that never ends
            self._fu, self._damaged = None, True
            return
        if end:
            nal = b"".join(self._fu)
            self._fu = None
            self._add(nal)

    def _aggregate(self, payload: bytes, pos: int) -> None:
        """NAL units each preceded by a 16-bit size, from `pos` on (STAP-A, H.265 AP)."""
        while pos + 2 <= len(payload):
            size = int.from_bytes(payload[pos : pos + 2], "big")
            pos += 2
            if size == 0 or pos + size > len(payload):
                self._damaged = True
                return
            self._add(payload[pos : pos + size])
            pos += size

    def _unsupported(self) -> None:
        self.unsupported_packets += 1
        self._damaged = True

    def _add(self, nal: bytes) -> None:
        self._nals.append(nal)
        self._size += len(nal) + 4
        if self._size > MAX_ACCESS_UNIT_BYTES:
            self._damaged = True
            self._nals, self._size = [], 0

    def _remember(self, nal: bytes) -> bool:
        """Keep a parameter set; True when it changes the parameters: an SPS or VPS other than
        the one we had (or the first), a picture parameter set of a known id with other content.
        A PPS of a new id is one more (some encoders alternate two): it joins the extradata
        without changing the parameters."""
        kind = self.kind(nal)
        if kind not in self._parameter_kinds:
            return False
        old = self.parameter_sets.get(kind)
        self.parameter_sets[kind] = nal
        if kind != self.PPS:
            return old != nal
        try:
            pps_id = BitReader(nal[self.HEADER_BYTES : self.HEADER_BYTES + 8]).ue()
        except (IndexError, ValueError):
            pps_id = -1  # unreadable: it replaces whatever was unreadable before
        old = self._pps.get(pps_id)
        self._pps[pps_id] = nal
        return old is not None and old != nal

    def _finish(self, out: list[AccessUnit]) -> None:
        nals, damaged, ts = self._nals, self._damaged or self._fu is not None, self._ts
        self._nals, self._size, self._fu, self._damaged = [], 0, None, False
        if damaged:
            self.dropped_units += 1
        if damaged or not nals or ts is None:
            return
        shift, mask = self.KIND_SHIFT, self.KIND_MASK  # `kind()`, without a call per NAL unit
        kinds = {(n[0] >> shift) & mask for n in nals}
        keyframe = not kinds.isdisjoint(self.KEY)
        if kinds.isdisjoint(self._parameter_kinds):  # nearly every unit: one copy of its bytes
            if keyframe and (extra := self.extradata):
                out.append(AccessUnit(ts, START_CODE.join([extra, *nals]), True))
                return
            out.append(AccessUnit(ts, START_CODE.join([b"", *nals]), keyframe))
            return
        changed = False
        for nal in nals:
            changed = self._remember(nal) or changed
        nals = self._without_late_parameter_sets(nals)
        unit = ParameterChange if changed else AccessUnit
        out.append(unit(ts, START_CODE.join([b"", *nals]), keyframe))

    def _without_late_parameter_sets(self, nals: list[bytes]) -> list[bytes]:
        """Drop parameter sets that follow the unit's first slice.

        Some servers (GStreamer's h264parse with config-interval=-1) repeat them before every
        slice of a multi-slice IDR picture; a parameter set after a slice starts a new access unit
        by the standard (H.264 7.4.1.2.3), so MPEG-TS readers would split the picture in two.
        They are remembered and the first ones stay, so nothing a decoder needs is lost.
        """
        seen_slice, kept = False, []
        for nal in nals:
            kind = self.kind(nal)
            if seen_slice and kind in self.PARAMETER_SETS:
                continue
            seen_slice = seen_slice or self.is_vcl(kind)
            kept.append(nal)
        return kept
