"""How long a silent RTSP stream goes unnoticed: OpenCV's own reader against froster-edge's Reader.

A real RTSP server (GStreamer's, tests/rtsp_server.py) serves a clip; once frames flow, the
server process is frozen (SIGSTOP: the connection stays open and nothing more arrives, as with a
hung camera or a network black hole). Measured from the freeze, --reps times each, interleaved:
(a) a bare cv2.VideoCapture with the read timeout, grabbing until a grab fails (what the runtime
did before); (b) runtime/sources.py's Reader, until it reports the stream down. Usage:
    python benchmarks/bench_silence.py [--read-timeout 5] [--reps 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CLIP = ROOT / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"


def bare_opencv(url: str, server, timeout_s: float) -> float:
    from froster_edge.runtime.sources import cv2

    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 10_000,
                                                 cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(timeout_s * 1000)])
    for _ in range(30):
        cap.grab()
    server.pause()
    t0 = time.monotonic()
    while cap.grab():
        pass
    took = time.monotonic() - t0
    server.resume()
    cap.release()
    return took


def reader(url: str, server, timeout_s: float) -> float:
    from froster_edge.runtime.options import CaptureOptions
    from froster_edge.runtime.sources import FrameSlot, Reader, open_first, parse_source
    from froster_edge.runtime.stats import RunStats, StreamCounters

    spec, options = parse_source(url), CaptureOptions(read_timeout_s=timeout_s)
    stop, down, counters = threading.Event(), threading.Event(), StreamCounters(spec.text, spec.kind)
    r = Reader(spec, open_first(spec, options), FrameSlot(keep_newest=True), stop, options, RunStats(), counters,
               on_state=lambda up, why: None if up else down.set())
    r.start()
    while counters.frames_read < 30:
        time.sleep(0.05)
    server.pause()
    t0 = time.monotonic()
    down.wait(60)
    took = time.monotonic() - t0
    server.resume()
    stop.set()
    r.join(10)
    return took


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--read-timeout", type=float, default=5.0)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    from tests.rtsp_server import RtspServer, encode_clip, gstreamer_missing

    why = gstreamer_missing()
    if why:
        sys.exit(f"bench_silence: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        video = encode_clip(CLIP, Path(tmp) / "cam.mp4", repeat=12)
        with RtspServer(video) as server:
            for rep in range(args.reps):
                a = bare_opencv(server.url(), server, args.read_timeout)
                b = reader(server.url(), server, args.read_timeout)
                print(f"rep {rep + 1}: read timeout {args.read_timeout:g} s: bare OpenCV noticed the silence after "
                      f"{a:.2f} s ({a / args.read_timeout:.2f} timeouts), the Reader after {b:.2f} s "
                      f"({b / args.read_timeout:.2f})", flush=True)


if __name__ == "__main__":
    main()
