"""One camera recorded the OpenCV way: decode with VideoCapture, re-encode with VideoWriter.

    python bench/opencv_recorder.py URL OUT_DIR SECONDS

Started once per camera by bench/opencv_baseline.py (as one `ffmpeg -c copy` runs per camera),
so it imports nothing but OpenCV: its CPU and PSS are what such a recorder costs. RTSP over TCP
comes from the environment (`OPENCV_FFMPEG_CAPTURE_OPTIONS=rtsp_transport;tcp`, set by the
caller). Frames go to `seg000.mp4`, `seg001.mp4`, ... ('mp4v', a new writer every SEGMENT_FRAMES
frames, i.e. 2 s at 25 fps). It stops after SECONDS x 25 frames, like `ffmpeg -t SECONDS` stops
after SECONDS of output, or at a wall-clock deadline (SECONDS + DEADLINE_GRACE_S) if it cannot
keep up, or on SIGTERM, or when a read fails; the open writer is released in every case. It
writes `stats.json` to OUT_DIR: frames, why it stopped, when the first and last frames were read,
and each frame's source timestamp (CAP_PROP_POS_MSEC), since the writer numbers frames itself
and its files cannot show a frame the capture skipped.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

try:
    import cv2
except ImportError:
    sys.exit("opencv_recorder.py: cv2 is missing; install the bench extra: "
             "pip install -e '.[bench]' (or pip install opencv-python-headless)")

FPS = 25
SEGMENT_FRAMES = 50  # 2 s
DEADLINE_GRACE_S = 15.0


def main(url: str, out: Path, seconds: float) -> int:
    started = time.monotonic()
    deadline = started + seconds + DEADLINE_GRACE_S
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    pos_ms: list[float] = []
    stats: dict[str, object] = {"url": url, "frames": 0, "segments": 0, "read_failures": 0,
                                "opened_s": None, "first_frame_s": None, "last_frame_s": None,
                                "stopped_by": "frames", "pos_ms": pos_ms}
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    stats["opened_s"] = time.monotonic() - started
    if not cap.isOpened():
        stats["stopped_by"] = "open failed"
        (out / "stats.json").write_text(json.dumps(stats))
        return 1
    fourcc = cv2.VideoWriter_fourcc(*"mp4v")
    writer = None
    frames, limit = 0, round(seconds * FPS)
    try:
        while frames < limit:
            if stop:
                stats["stopped_by"] = "SIGTERM"
                break
            if time.monotonic() > deadline:
                stats["stopped_by"] = "deadline"
                break
            ok, image = cap.read()
            if not ok:
                stats["read_failures"] = 1
                stats["stopped_by"] = "read failed"
                break
            now = time.monotonic() - started
            if stats["first_frame_s"] is None:
                stats["first_frame_s"] = now
            stats["last_frame_s"] = now
            pos_ms.append(round(cap.get(cv2.CAP_PROP_POS_MSEC), 1))
            if frames % SEGMENT_FRAMES == 0:
                if writer is not None:
                    writer.release()
                height, width = image.shape[:2]
                path = out / f"seg{frames // SEGMENT_FRAMES:03d}.mp4"
                writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, fourcc, FPS, (width, height))
                if not writer.isOpened():
                    stats["stopped_by"] = "writer failed"
                    writer = None
                    break
                stats["segments"] = frames // SEGMENT_FRAMES + 1
            writer.write(image)
            frames += 1
    finally:
        if writer is not None:
            writer.release()
        cap.release()
        stats["frames"] = frames
        stats["ended_s"] = time.monotonic() - started
        (out / "stats.json").write_text(json.dumps(stats))
    return 0 if stats["stopped_by"] == "frames" else 1


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])))
