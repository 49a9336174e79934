"""What a source read again skips (collector/media/rereads.py): pure, on hand-made packets."""

from __future__ import annotations

import zlib
from fractions import Fraction

from collector.media.opener import KEY_FRAMES_KEPT, FileIdentity, HandedOver
from collector.media.packets import MediaPacket
from collector.media.rereads import (
    LIVE_PLAYLIST,
    LIVE_REPEAT_SECONDS,
    Skips,
    handed_over,
    without_torn_tails,
)

VIDEO, AUDIO = 0, 1
TIME_BASES = {VIDEO: Fraction(1, 90_000), AUDIO: Fraction(1, 48_000)}
FILE = FileIdentity(9, None)
X = zlib.crc32(b"x")


class P(bytes):
    """What the skip reads of an av.Packet: its payload, timestamps and key frame flag."""

    def __new__(cls, dts, pts=None, data=b"x", key=False):  # type: ignore[no-untyped-def]
        packet = super().__new__(cls, data)
        packet.dts, packet.pts, packet.is_keyframe = dts, pts, key
        return packet


def skips(packets: list[tuple[P, int]], skip: Skips) -> list[bool]:
    return [skip.skips(packet, index) for packet, index in packets]


def test_a_file_skips_up_to_the_last_timestamps_once_its_first_video_packet_matches():
    """Audio before the first video packet is delivered (the recorder drops it: no run has
    started); then each stream is skipped up to its last timestamp (DTS, else PTS), and left
    alone once past it."""
    skip = Skips(HandedOver({VIDEO: (10, X)}, {VIDEO: 100, AUDIO: 50}), FILE, VIDEO,
                 TIME_BASES)
    assert skips([(P(5), AUDIO), (P(10), VIDEO), (P(None, 90), VIDEO), (P(30), AUDIO),
                  (P(100), VIDEO), (P(None, None), VIDEO), (P(101), VIDEO), (P(5), VIDEO),
                  (P(51), AUDIO), (P(40), AUDIO)], skip) == [
        False, True, True, True, True, False, False, False, False, False]
    assert not skip


def test_a_file_whose_first_video_packet_differs_skips_nothing():
    """Another timestamp or other bytes: not the sequence handed over (a live stream that gave
    a Content-Length, with its own pictures and maybe a restarted clock)."""
    for first in (P(11), P(10, data=b"y")):
        skip = Skips(HandedOver({VIDEO: (10, X)}, {VIDEO: 100, AUDIO: 50}), FILE, VIDEO,
                     TIME_BASES)
        assert skips([(first, VIDEO), (P(20), VIDEO), (P(30), AUDIO)], skip) == [False] * 3
        assert not skip


def test_a_live_playlist_skips_once_a_key_frame_matches_and_only_so_far_back():
    """A live playlist's new session starts a few segments back: its first video key frame
    must be one handed over (non-key frames before it are delivered); the skip reaches back
    LIVE_REPEAT_SECONDS at most (older is a restarted encoder's clock)."""
    last = 100 * 90_000
    before = HandedOver({VIDEO: (0, X)}, {VIDEO: last}, ((96 * 90_000, X), (98 * 90_000, X)))
    skip = Skips(before, LIVE_PLAYLIST, VIDEO, TIME_BASES)
    assert skips([(P(95 * 90_000), VIDEO), (P(96 * 90_000, key=True), VIDEO),
                  (P(99 * 90_000), VIDEO), (P(last + 1), VIDEO)], skip) == [
        False, True, True, False]
    restarted = Skips(before, LIVE_PLAYLIST, VIDEO, TIME_BASES)
    assert skips([(P(96 * 90_000, key=True, data=b"other"), VIDEO),
                  (P(97 * 90_000), VIDEO)], restarted) == [False, False]
    later = (LIVE_REPEAT_SECONDS + 10) * 90_000
    far = Skips(HandedOver({}, {VIDEO: later}, ((1 * 90_000, X),)), LIVE_PLAYLIST, VIDEO,
                TIME_BASES)
    assert far.low[VIDEO] == later - LIVE_REPEAT_SECONDS * 90_000
    assert skips([(P(1 * 90_000, key=True), VIDEO)], far) == [False]  # proven, but too old


def media(stream: int, dts: int | None, pts: int | None = None, key: bool = False,
          data: bytes = b"x") -> MediaPacket:
    return MediaPacket(stream, data, pts, dts, 1, key, Fraction(1, 90000))


def test_a_live_skip_ends_at_a_key_frame_the_jobs_were_not_handed():
    """Proven on an old segment, the re-read goes on (after an EXT-X-DISCONTINUITY) with a
    restarted encoder's segments, its clock back among the old timestamps: its first key frame
    ends the skip, for every stream."""
    keys = tuple((t * 90_000, zlib.crc32(b"old%d" % t)) for t in range(69, 101))
    before = HandedOver({}, {VIDEO: 100 * 90_000, AUDIO: 100 * 48_000}, keys)
    skip = Skips(before, LIVE_PLAYLIST, VIDEO, TIME_BASES)
    old = [(P(t * 90_000, data=b"old%d" % t, key=True), VIDEO) for t in (98, 99, 100)]
    assert skips(old, skip) == [True] * 3
    new = [(P(int(1.4 * 90_000), data=b"new0", key=True), VIDEO), (P(2 * 48_000), AUDIO),
           (P(int(1.44 * 90_000)), VIDEO)]
    assert skips(new, skip) == [False] * 3 and not skip


def test_what_a_batch_hands_over_and_how_it_adds_up():
    batch = [media(AUDIO, 1), media(VIDEO, 2, key=True), media(VIDEO, 3), media(AUDIO, None, 5),
             media(VIDEO, 6, key=True, data=b"k")]
    assert handed_over(batch, 2, VIDEO, live=False, first_wanted=True) == HandedOver(
        {VIDEO: (2, X)}, {VIDEO: 6, AUDIO: 5})
    assert handed_over(batch, 2, VIDEO, live=False, first_wanted=False) == HandedOver(
        {}, {VIDEO: 6, AUDIO: 5})  # (a later batch: the source's first is known)
    live = handed_over(batch, 2, VIDEO, live=True, first_wanted=True)
    assert live.keys == ((2, X), (6, zlib.crc32(b"k")))
    assert live.horizon == 6 - LIVE_REPEAT_SECONDS * 90_000
    later = HandedOver({VIDEO: (9, X)}, {VIDEO: 9}, tuple((t, X) for t in range(3000)))
    both = live.then(later)
    assert both.first == {VIDEO: (2, X)} and both.last == {VIDEO: 9, AUDIO: 5}
    assert len(both.keys) == KEY_FRAMES_KEPT and both.keys[-1] == (2999, X)


def test_a_live_playlist_keeps_the_key_frames_of_its_window_however_many():
    """A re-read starts ~3 segments back: with short key frame intervals and long segments
    that is more key frames than any fixed count (0.2 s GOP, 4 s segments: 60), so they are
    kept by time, LIVE_REPEAT_SECONDS back from the last video timestamp."""
    record = HandedOver({}, {})
    for second in range(200):  # batches of five key frames a second
        batch = [media(VIDEO, (second * 5 + k) * 18_000, key=True,
                       data=b"%d" % (second * 5 + k)) for k in range(5)]
        record = record.then(handed_over(batch, 1, VIDEO, live=True, first_wanted=False))
    assert len(record.keys) == LIVE_REPEAT_SECONDS * 5 + 1
    assert record.keys[0][0] == record.last[VIDEO] - LIVE_REPEAT_SECONDS * 90_000
    back = record.last[VIDEO] - 60 * 18_000  # 12 s back: the re-read's first key frame
    skip = Skips(record, LIVE_PLAYLIST, VIDEO, TIME_BASES)
    assert skip.skips(P(back, data=b"%d" % (back // 18_000), key=True), VIDEO)


def test_an_mpegts_input_error_drops_each_streams_last_packet():
    batch = [media(0, 1), media(1, 2), media(0, 3), media(0, 4), media(1, None, 5)]
    assert without_torn_tails(batch) == [media(0, 1), media(1, 2), media(0, 3)]
