"""AAC over RTP, RFC 3640 `mpeg4-generic` in AAC-hbr mode, into raw AAC frames.

A packet holds a 16-bit AU-headers-length (in bits), the AU headers (`sizelength` bits of size and
`indexlength`/`indexdeltalength` bits of index each), then the frames back to back. A frame too big
for one packet is fragmented over several with the same timestamp, the last one marked. Frame `i`
of a packet is at `timestamp + i * 1024` (`constantduration`, default 1024 samples).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collector.numbers import ascii_int
from collector.rtsp.rtp import AccessUnit, RtpPacket

FRAME_SAMPLES = 1024


@dataclass(frozen=True, slots=True)
class AacConfig:
    size_length: int = 13
    index_length: int = 3
    index_delta_length: int = 3
    frame_samples: int = FRAME_SAMPLES
    config: bytes = b""  # AudioSpecificConfig

    @classmethod
    def from_fmtp(cls, fmtp: dict[str, str]) -> AacConfig:
        def num(key: str, default: int) -> int:
            return ascii_int(fmtp.get(key, ""), default)

        try:
            config = bytes.fromhex(fmtp.get("config", ""))
        except ValueError:
            config = b""
        return cls(
            size_length=num("sizelength", 13),
            index_length=num("indexlength", 3),
            index_delta_length=num("indexdeltalength", 3),
            frame_samples=num("constantduration", FRAME_SAMPLES),
            config=config,
        )

    def channels(self) -> int:
        """The channel count of the AudioSpecificConfig's channelConfiguration (0 when unknown
        or not one of ISO 14496-3's 1-7, where 7 means 7.1: eight channels). It follows the
        object type (5 bits, 6 more when escaped as 31) and the sampling frequency index (4 bits,
        an explicit 24-bit frequency when 15)."""
        bits = "".join(f"{byte:08b}" for byte in self.config)
        pos = 5 + (6 if bits[:5] == "11111" else 0)
        pos += 4 + (24 if bits[pos : pos + 4] == "1111" else 0)
        field = bits[pos : pos + 4]
        if len(field) < 4:
            return 0
        value = int(field, 2)
        return {7: 8}.get(value, value) if value <= 7 else 0


@dataclass(slots=True)
class AacDepacketizer:
    config: AacConfig = field(default_factory=AacConfig)
    dropped_units: int = 0
    _fragment: bytearray | None = None
    _fragment_size: int = 0
    _fragment_ts: int = 0
    _skip_ts: int | None = None  # the rest of a fragmented frame we lost part of

    def push(self, pkt: RtpPacket, timestamp: int, lost: int) -> list[AccessUnit]:
        return self.push_payload(pkt.payload, pkt.marker, timestamp, lost)

    def push_payload(self, data: bytes, marker: bool, timestamp: int, lost: int
                     ) -> list[AccessUnit]:
        if lost and self._fragment is not None:
            self._fragment, self._skip_ts = None, self._fragment_ts
            self.dropped_units += 1
        if self._skip_ts is not None:
            if timestamp == self._skip_ts:
                return []
            self._skip_ts = None
        if len(data) < 2:
            self.dropped_units += 1
            return []
        if (data[1] == 16 and not data[0] and self._fragment is None
                and self.config.size_length == 13 and self.config.index_length == 3
                and len(data) > 4):
            # The usual packet: one AU header of 13 bits of size and 3 of index, one whole frame
            # (nearly every packet of every camera; the general loop below gives the same).
            if (data[2] << 5) | (data[3] >> 3) == len(data) - 4:
                return [AccessUnit(timestamp, data[4:], True)]
        header_bits = int.from_bytes(data[:2], "big")
        header_bytes = (header_bits + 7) // 8
        sizes = self._sizes(data[2 : 2 + header_bytes], header_bits)
        pos = 2 + header_bytes
        if self._fragment is not None:  # a continuation of a fragmented frame
            if timestamp != self._fragment_ts:
                self._fragment = None
                self.dropped_units += 1
            else:
                return self._continue(data[pos:], marker)
        if len(sizes) == 1 and pos + sizes[0] > len(data):  # the first fragment of a big frame
            self._fragment = bytearray(data[pos:])
            self._fragment_size, self._fragment_ts = sizes[0], timestamp
            return []
        out = []
        for i, size in enumerate(sizes):
            if pos + size > len(data):
                self.dropped_units += len(sizes) - i
                break
            ts = timestamp + i * self.config.frame_samples
            out.append(AccessUnit(ts, data[pos : pos + size], True))
            pos += size
        return out

    def flush(self) -> list[AccessUnit]:
        return []

    def _continue(self, chunk: bytes, marker: bool) -> list[AccessUnit]:
        assert self._fragment is not None
        self._fragment += chunk
        if not marker and len(self._fragment) < self._fragment_size:
            return []
        frame, self._fragment = bytes(self._fragment), None
        if len(frame) != self._fragment_size:
            self.dropped_units += 1
            return []
        return [AccessUnit(self._fragment_ts, frame, True)]

    def _sizes(self, headers: bytes, bits: int) -> list[int]:
        cfg = self.config
        value = int.from_bytes(headers, "big") if headers else 0
        total = len(headers) * 8
        pos, sizes = 0, []
        index_bits = cfg.index_length
        while pos + cfg.size_length + index_bits <= bits:
            shift = total - pos - cfg.size_length
            sizes.append((value >> shift) & ((1 << cfg.size_length) - 1))
            pos += cfg.size_length + index_bits
            index_bits = cfg.index_delta_length
        return sizes
