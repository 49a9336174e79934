"""The demux loop's stream lookup (collector/media/pyav_streams.py) answers as PyAV's own does."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from av.container.streams import StreamContainer

import collector.media.pyav_source  # noqa: F401  (installs the lookup, as the service does)
from collector.media import pyav_streams


def _outcome(streams: StreamContainer, key: object, method) -> object:
    try:
        return method(streams, key)
    except Exception as exc:  # the exception's type is the answer
        return type(exc)


def test_the_service_installs_the_lookup() -> None:
    assert StreamContainer.__getitem__ is pyav_streams._getitem


def test_every_key_gets_pyavs_answer(media_ts: Path) -> None:
    with av.open(str(media_ts)) as container:
        streams = container.streams
        assert len(streams) == 2
        for key in (0, 1, -1, -2, 2, -3, True, {"video": 0}, {"audio": 0}):
            ours = _outcome(streams, key, pyav_streams._getitem)
            theirs = _outcome(streams, key, pyav_streams._pyav_getitem)
            if theirs is IndexError:  # out of range: ours says which index, as an IndexError
                assert ours is pyav_streams.StreamAppeared, key
            else:
                assert ours is theirs or ours == theirs, key
        assert streams[0] is streams.video[0] and streams[1] is streams.audio[0]
        with pytest.raises(IndexError, match=r"^no stream 2 among the 2 opened$"):
            streams[2]


def test_demuxed_packets_carry_their_own_stream(media_ts: Path) -> None:
    with av.open(str(media_ts)) as container:
        kinds = {stream.index: stream.type for stream in container.streams}
        seen = set()
        for packet in container.demux():
            if packet.size == 0:  # PyAV's flush packets at the end: stream_index is not theirs
                continue
            assert packet.stream is container.streams[packet.stream_index]
            assert packet.stream.type == kinds[packet.stream_index]
            seen.add(packet.stream.type)
    assert seen == {"video", "audio"}
