"""A faster `StreamContainer.__getitem__` for PyAV, whose demux loop calls it for every packet.

PyAV 18's `InputContainer.demux` looks up each packet's stream with `self.streams[index]`, and
`StreamContainer.__getitem__` answers an integer through `get(index)[0]`, which builds a selection
list through a generator: measured, ~12 % of a loop that demuxes an MPEG-TS file over HTTP and
muxes it into segments, and ~7 % of that loop's time saved by this (BENCHMARKS.md, "offline
ingest"). An integer index now reads the container's streams as a tuple; every other key (a
string, a dict, a slice) goes to PyAV's own method. The answer is the same: the same stream
object, and an IndexError out of range. `install()` is idempotent.

That IndexError is a `StreamAppeared` when the demux loop asks: a stream that appeared after the
open (a new program map in MPEG-TS, as where a file of video alone goes on with audio) is not in
the container's streams, so PyAV skips its packets, but once the input ends its flush loop goes
over every stream FFmpeg now has and looks the new one up: the session's end, not a failure
(pyav_source.py). Every other lookup out of range raises it too, as the IndexError it is.
"""

from __future__ import annotations

from typing import Any

from av.container.streams import StreamContainer

_pyav_getitem = StreamContainer.__getitem__


class StreamAppeared(IndexError):
    """A stream index the container's streams do not have (see the module docstring)."""


def _getitem(self: StreamContainer, index: Any) -> Any:
    if type(index) is int:
        streams = tuple(self)
        try:
            return streams[index]
        except IndexError:
            raise StreamAppeared(f"no stream {index} among the {len(streams)} opened") from None
    return _pyav_getitem(self, index)


def install() -> None:
    StreamContainer.__getitem__ = _getitem  # type: ignore[method-assign]
