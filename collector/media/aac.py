"""AAC in ADTS framing (MPEG-TS, HLS) to raw AAC plus an AudioSpecificConfig (MP4, Matroska).

Sources hand out raw AAC with the config as extradata, one form for every container: the MP4 and
Matroska muxers need it that way, and the MPEG-TS muxer adds ADTS headers back from the config.
"""

from __future__ import annotations

from typing import TypeVar

Payload = TypeVar("Payload", bytes, memoryview)

SAMPLE_RATES = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350
)
PROFILES = {"Main": 1, "LC": 2, "SSR": 3, "LTP": 4, "HE-AAC": 2, "HE-AACv2": 2}


def is_adts(data: bytes | memoryview) -> bool:
    return len(data) >= 7 and data[0] == 0xFF and (data[1] & 0xF6) == 0xF0


def strip_adts(data: Payload) -> Payload:
    """The raw AAC frame inside one ADTS frame (the header is 7 bytes, 9 with a CRC); a slice of
    `data`, so a memoryview stays a view of the same buffer (no copy)."""
    if not is_adts(data):
        return data
    return data[7 if data[1] & 0x01 else 9 :]


def audio_specific_config(profile: str | None, sample_rate: int, channels: int) -> bytes:
    """The 2-byte AudioSpecificConfig: object type (5 bits), rate index (4), channels (4), 0 (3)."""
    object_type = PROFILES.get(profile or "LC", 2)
    try:
        rate_index = SAMPLE_RATES.index(sample_rate)
    except ValueError:
        rate_index = 4  # 44100: a guess the decoder will correct from the stream itself
    value = (object_type << 11) | (rate_index << 7) | ((channels & 0x0F) << 3)
    return value.to_bytes(2, "big")
