"""H.264 over RTP (RFC 6184): single NAL units, STAP-A and FU-A; and the SPS fields we need.

Access-unit assembly, loss handling and parameter-set insertion are shared with H.265
(`nal_units`); this module knows H.264's packetization and NAL types.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.rtsp.bits import BitReader
from collector.rtsp.nal_units import NalDepacketizer, parse_sprop

NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS = 5, 6, 7, 8
STAP_A, FU_A = 24, 28


class H264Depacketizer(NalDepacketizer):
    PARAMETER_SETS = (NAL_SPS, NAL_PPS)
    KEY = frozenset({NAL_IDR})

    @classmethod
    def from_fmtp(cls, fmtp: dict[str, str]) -> H264Depacketizer:
        return cls(parse_sprop(fmtp.get("sprop-parameter-sets", "")))

    @property
    def sps(self) -> bytes | None:
        return self.parameter_sets.get(NAL_SPS)

    def kind(self, nal: bytes) -> int:
        return nal[0] & 0x1F

    def is_vcl(self, kind: int) -> bool:
        return 1 <= kind <= 5

    def _payload(self, payload: bytes) -> None:
        nal_type = payload[0] & 0x1F
        if 1 <= nal_type <= 23:
            self._add(payload)
        elif nal_type == STAP_A:
            self._aggregate(payload, 1)
        elif nal_type == FU_A and len(payload) >= 2:
            fu = payload[1]
            header = bytes([(payload[0] & 0xE0) | (fu & 0x1F)]) if fu & 0x80 else None
            self._fragment(header, payload[2:], bool(fu & 0x40))
        else:
            self._unsupported()


@dataclass(frozen=True, slots=True)
class SpsInfo:
    width: int
    height: int
    fps: float | None  # from the VUI timing info, when present


def parse_sps(nal: bytes) -> SpsInfo:
    """Picture size (after cropping) and frame rate of an H.264 SPS NAL unit (with its header)."""
    r = BitReader(nal[1:])
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in (100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135):
        chroma_format = r.ue()
        if chroma_format == 3:
            r.u(1)  # separate_colour_plane
        r.ue()
        r.ue()  # bit depths
        r.u(1)  # qpprime_y_zero_transform_bypass
        if r.u(1):  # seq_scaling_matrix_present
            for i in range(8 if chroma_format != 3 else 12):
                if r.u(1):
                    _skip_scaling_list(r, 16 if i < 6 else 64)
    r.ue()  # log2_max_frame_num
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)
    width_mbs, height_map_units = r.ue() + 1, r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)
    r.u(1)  # direct_8x8_inference
    width, height = width_mbs * 16, height_map_units * 16 * (2 - frame_mbs_only)
    if r.u(1):  # frame_cropping
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    fps = None
    try:
        if r.u(1):  # vui_parameters_present
            fps = _vui_fps(r)
    except (IndexError, ValueError):
        pass
    return SpsInfo(width, height, fps)


def _vui_fps(r: BitReader) -> float | None:
    if r.u(1):  # aspect_ratio_info
        if r.u(8) == 255:
            r.u(32)
    if r.u(1):  # overscan_info
        r.u(1)
    if r.u(1):  # video_signal_type
        r.u(4)
        if r.u(1):
            r.u(24)
    if r.u(1):  # chroma_loc_info
        r.ue()
        r.ue()
    if r.u(1):  # timing_info
        units, scale = r.u(32), r.u(32)
        if units:
            return scale / (2 * units)
    return None


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last
