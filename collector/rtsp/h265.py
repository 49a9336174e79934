"""H.265 over RTP (RFC 7798): single NAL units, aggregation packets (AP) and fragmentation units
(FU); and the picture size and reorder depth (sps_max_num_reorder_pics) from the SPS.

Not supported: PACI packets and DONL fields (`sprop-max-don-diff` > 0, i.e. interleaved order),
which cameras do not use; such a track is refused by `tracks.supported`.
"""

from __future__ import annotations

from collector.rtsp.bits import BitReader
from collector.rtsp.h264 import MAX_REORDER, SpsInfo
from collector.rtsp.nal_units import NalDepacketizer, parse_sprop

NAL_VPS, NAL_SPS, NAL_PPS = 32, 33, 34
AP, FU = 48, 49
IRAP = frozenset(range(16, 22))  # BLA, IDR, CRA: decoding can start here


class H265Depacketizer(NalDepacketizer):
    PARAMETER_SETS = (NAL_VPS, NAL_SPS, NAL_PPS)
    SPS, PPS, HEADER_BYTES = NAL_SPS, NAL_PPS, 2
    KEY = IRAP
    KIND_SHIFT, KIND_MASK = 1, 0x3F
    SINGLE_LOW, SINGLE_HIGH, MIN_PAYLOAD = 0, AP - 1, 3

    @classmethod
    def from_fmtp(cls, fmtp: dict[str, str]) -> H265Depacketizer:
        nals = []
        for key in ("sprop-vps", "sprop-sps", "sprop-pps"):
            nals += parse_sprop(fmtp.get(key, ""))
        return cls(nals)

    def kind(self, nal: bytes) -> int:
        return (nal[0] >> 1) & 0x3F

    def is_vcl(self, kind: int) -> bool:
        return kind < 32

    def _payload(self, payload: bytes) -> None:
        if len(payload) < self.MIN_PAYLOAD:
            self._unsupported()
            return
        nal_type = (payload[0] >> 1) & 0x3F
        if nal_type <= self.SINGLE_HIGH:
            self._add(payload)
        elif nal_type == AP:
            self._aggregate(payload, 2)
        elif nal_type == FU:
            fu = payload[2]
            header = None
            if fu & 0x80:
                header = bytes([(payload[0] & 0x81) | ((fu & 0x3F) << 1), payload[1]])
            self._fragment(header, payload[3:], bool(fu & 0x40))
        else:
            self._unsupported()


def parse_sps(nal: bytes) -> SpsInfo:
    """Picture size (after the conformance window) and reorder depth of an H.265 SPS NAL unit
    (with its header). The frame rate (in the VUI, far behind) is left to the SDP or the stream."""
    r = BitReader(nal[2:])
    r.u(4)  # sps_video_parameter_set_id
    max_sub_layers = r.u(3) + 1
    r.u(1)  # temporal_id_nesting
    _skip_profile_tier_level(r, max_sub_layers)
    r.ue()  # sps_seq_parameter_set_id
    chroma_format = r.ue()
    if chroma_format == 3:
        r.u(1)  # separate_colour_plane
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance_window
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        sub_w = 2 if chroma_format in (1, 2) else 1
        sub_h = 2 if chroma_format == 1 else 1
        width -= (left + right) * sub_w
        height -= (top + bottom) * sub_h
    r.ue()  # bit_depth_luma_minus8
    r.ue()  # bit_depth_chroma_minus8
    r.ue()  # log2_max_pic_order_cnt_lsb_minus4
    every_layer = r.u(1)  # sps_sub_layer_ordering_info_present
    reorder = 0
    for _ in range(max_sub_layers if every_layer else 1):
        r.ue()  # sps_max_dec_pic_buffering_minus1
        reorder = r.ue()  # sps_max_num_reorder_pics: the highest sub-layer's comes last
        r.ue()  # sps_max_latency_increase_plus1
    return SpsInfo(width, height, None, min(reorder, MAX_REORDER))


def _skip_profile_tier_level(r: BitReader, max_sub_layers: int) -> None:
    r.u(8)  # profile_space, tier, profile_idc
    r.u(32)  # compatibility flags
    r.u(48)  # progressive/interlaced/non-packed/frame-only flags, 43 reserved bits, 1 more
    r.u(8)  # general_level_idc
    present = [(r.u(1), r.u(1)) for _ in range(max_sub_layers - 1)]
    if max_sub_layers > 1:
        for _ in range(max_sub_layers - 1, 8):
            r.u(2)
    for profile, level in present:
        if profile:
            r.u(88)
        if level:
            r.u(8)
