"""H.264 over RTP (RFC 6184): single NAL units, STAP-A and FU-A; and the SPS fields we need:
picture size, frame rate and how many frames the stream reorders (B-frames), which `tracks` needs
to give packets a decoding time.

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
    SPS, PPS = NAL_SPS, NAL_PPS
    KEY = frozenset({NAL_IDR})
    KIND_SHIFT, KIND_MASK = 0, 0x1F
    SINGLE_LOW, SINGLE_HIGH = 1, 23

    @classmethod
    def from_fmtp(cls, fmtp: dict[str, str]) -> H264Depacketizer:
        return cls(parse_sprop(fmtp.get("sprop-parameter-sets", "")))

    def kind(self, nal: bytes) -> int:
        return nal[0] & 0x1F

    def is_vcl(self, kind: int) -> bool:
        return 1 <= kind <= 5

    def _payload(self, payload: bytes) -> None:
        nal_type = payload[0] & 0x1F
        if self.SINGLE_LOW <= nal_type <= self.SINGLE_HIGH:
            self._add(payload)
        elif nal_type == STAP_A:
            self._aggregate(payload, 1)
        elif nal_type == FU_A and len(payload) >= 2:
            fu = payload[1]
            header = bytes([(payload[0] & 0xE0) | (fu & 0x1F)]) if fu & 0x80 else None
            self._fragment(header, payload[2:], bool(fu & 0x40))
        else:
            self._unsupported()


# MaxDpbMbs by level_idc (H.264 Table A-1): bounds the reordering when the SPS does not say.
MAX_DPB_MBS = {9: 396, 10: 396, 11: 900, 12: 2376, 13: 2376, 20: 2376, 21: 4752, 22: 8100,
               30: 8100, 31: 18000, 32: 20480, 40: 32768, 41: 32768, 42: 34816, 50: 110400,
               51: 184320, 52: 184320, 60: 696320, 61: 696320, 62: 696320}
MAX_REORDER = 16  # frames: the most any H.264 or H.265 decoder has to hold back
INTRA_PROFILES = (100, 110, 122, 244)  # intra-only when constraint_set3 is set


@dataclass(frozen=True, slots=True)
class SpsInfo:
    width: int
    height: int
    fps: float | None  # from the VUI timing info, when present
    # Frames a decoder may hold back before output (max_num_reorder_frames): 0 means decoding
    # order is presentation order. When the SPS does not say, a conservative bound by profile.
    reorder: int = 0


def parse_sps(nal: bytes) -> SpsInfo:
    """Picture size (after cropping), frame rate and reorder depth of an H.264 SPS NAL unit (with
    its header)."""
    r = BitReader(nal[1:])
    profile = r.u(8)
    constraints, level = r.u(8), r.u(8)
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
    max_ref_frames = r.ue()
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
    vui: dict[str, float | int] = {}
    try:
        if r.u(1):  # vui_parameters_present
            _read_vui(r, vui)
    except (IndexError, ValueError):
        pass  # what was read before the damage still counts
    fps = vui.get("fps")
    reorder = vui.get("reorder")
    if reorder is None:
        frame_mbs = width_mbs * height_map_units * (2 - frame_mbs_only)
        reorder = default_reorder(profile, constraints, level, max_ref_frames, frame_mbs)
    return SpsInfo(width, height, None if fps is None else float(fps), int(reorder))


def default_reorder(profile: int, constraints: int, level: int, max_ref_frames: int,
                    frame_mbs: int) -> int:
    """How many frames a stream may reorder when its SPS has no bitstream restriction.

    0 for Baseline (and streams that keep to its constraints: constraint_set0) and intra-only
    streams; otherwise the decoded picture buffer's size at this level (H.264 A.3.1 h), as
    FFmpeg assumes too. Too high only delays decoding times; too low would put them after
    presentation times.
    """
    if profile == 66 or constraints & 0x80 or max_ref_frames == 0 or profile == 44:
        return 0
    if profile in INTRA_PROFILES and constraints & 0x10:
        return 0
    max_dpb_mbs = MAX_DPB_MBS.get(level)
    if max_dpb_mbs is None or frame_mbs <= 0:
        return MAX_REORDER
    return min(max_dpb_mbs // frame_mbs, MAX_REORDER)


def _read_vui(r: BitReader, vui: dict[str, float | int]) -> None:
    """The VUI's frame rate ("fps") and max_num_reorder_frames ("reorder"), as far as present."""
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
            vui["fps"] = scale / (2 * units)
        r.u(1)  # fixed_frame_rate
    nal_hrd = r.u(1)
    if nal_hrd:
        _skip_hrd(r)
    vcl_hrd = r.u(1)
    if vcl_hrd:
        _skip_hrd(r)
    if nal_hrd or vcl_hrd:
        r.u(1)  # low_delay_hrd
    r.u(1)  # pic_struct_present
    if r.u(1):  # bitstream_restriction
        r.u(1)  # motion_vectors_over_pic_boundaries
        for _ in range(4):  # max_bytes_per_pic_denom, max_bits_per_mb_denom, log2 mv lengths
            r.ue()
        reorder = r.ue()  # max_num_reorder_frames
        r.ue()  # max_dec_frame_buffering
        vui["reorder"] = min(reorder, MAX_REORDER)


def _skip_hrd(r: BitReader) -> None:
    count = r.ue() + 1  # cpb_cnt_minus1
    r.u(8)  # bit_rate_scale, cpb_size_scale
    for _ in range(count):
        r.ue()  # bit_rate_value_minus1
        r.ue()  # cpb_size_value_minus1
        r.u(1)  # cbr_flag
    r.u(20)  # four 5-bit delay and offset lengths


def _skip_scaling_list(r: BitReader, size: int) -> None:
    last = nxt = 8
    for _ in range(size):
        if nxt:
            nxt = (last + r.se() + 256) % 256
        last = nxt or last
