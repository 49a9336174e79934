"""Depacketizing alone: `reads.route` over a synthetic RTSP session, in reads of 0.4 s.

    .venv/bin/python bench/route_reads.py [--seconds 60] [--passes 15]

The session is what the benchmark's GStreamer servers send (bench/cameras.py): 720p25 H.264 with
an access unit delimiter in a packet of its own before every frame, a 2 s GOP whose key frames
carry SPS and PPS in a STAP-A, ~9 KB P-frames and ~60 KB key frames as 1400-byte FU-A
fragments, and AAC at 48 kHz, one frame a packet. Each pass feeds the whole session to a fresh
session's framer and `route` (the shortcuts the service uses), the media packets dropped as they
come. Prints microseconds per RTP packet, min and median over the passes: a figure to compare
between two checkouts run one after the other, not a share of the service's CPU.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from collector.rtsp import reads
from collector.rtsp.wire import Framer
from tests.rtsp.fake_camera import frame_bytes
from tests.rtsp.packets import PPS, SPS, aac_payload, fu_a, rtp, slice_nal, stap_a
from tests.rtsp.test_reads import SDP_H264, session_of

READ_S = 0.4  # the RTSP client reads every session this often (collector/rtsp/opener.py)
AUD = bytes([0x09, 0xF0])  # an H.264 access unit delimiter, as GStreamer sends one


def session_reads(seconds: int) -> tuple[list[bytes], int]:
    """The session's bytes as the reads would get them, and its number of RTP packets."""
    timed: list[tuple[float, bytes]] = []
    seq = 0
    for i in range(25 * seconds):
        key = i % 50 == 0
        payloads = [AUD, *([stap_a([SPS, PPS])] if key else [])]
        payloads += fu_a(slice_nal(5 if key else 1, 60000 if key else 9000, fill=i % 251), 1400)
        for j, payload in enumerate(payloads):
            marker = j == len(payloads) - 1
            timed.append((i / 25, frame_bytes(0, rtp(seq & 0xFFFF, 1000 + i * 3600, payload,
                                                     marker=marker))))
            seq += 1
    for k in range(int(48000 / 1024 * seconds)):
        timed.append((k * 1024 / 48000, frame_bytes(2, rtp(
            k & 0xFFFF, 77 + k * 1024, aac_payload([bytes([k % 256]) * 170]), marker=True,
            pt=97))))
    timed.sort(key=lambda item: item[0])
    chunks: list[bytes] = []
    current: list[bytes] = []
    edge = READ_S
    for at, data in timed:
        while at >= edge:
            chunks.append(b"".join(current))
            current, edge = [], edge + READ_S
        current.append(data)
    chunks.append(b"".join(current))
    return chunks, len(timed)


def one_pass(chunks: list[bytes]) -> float:
    session = session_of(SDP_H264)
    paths = reads.shortcuts(session)
    framer, batch = Framer(), []
    started = time.perf_counter()
    for chunk in chunks:
        framer.feed(chunk)
        reads.route(framer, session, paths, [], batch, 0.0)
        batch.clear()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=60, help="length of the session")
    parser.add_argument("--passes", type=int, default=15)
    args = parser.parse_args()
    chunks, packets = session_reads(args.seconds)
    times = [one_pass(chunks) for _ in range(args.passes)]
    print(f"{packets} RTP packets in {len(chunks)} reads of {READ_S:g} s; route per packet: "
          f"min {min(times) / packets * 1e6:.3f} us, "
          f"median {statistics.median(times) / packets * 1e6:.3f} us over {args.passes} passes")


if __name__ == "__main__":
    main()
