"""The runtime's per-frame preprocessing (short-side resize + centre crop to 224), by spatial rule.

The runtime resizes and crops each sampled frame once (runtime/pipeline.py's Assembler calls the
bundle's `SpatialSpec.center_crop`). This times that call for the reference rule (bilinear, long
side floored, ceil-centred: froster_edge.spatial) against the legacy one (bicubic, rounded,
floor-centred) on real frames of the bundled clips at the datasets' sizes (UCF101 340x256,
HMDB51 320x240, a K400 426x320 when ../shared/data is present) and scaled to 720p and 1080p
(camera frames). Repetitions are interleaved (legacy, reference, legacy, ...) and each figure is
the median over them, in one run: the ratio is what counts on a shared machine.

Usage:
    python benchmarks/bench_preprocess.py [--reps 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from froster_edge.spatial import LEGACY, REFERENCE
from froster_edge.video import decode_video

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "examples" / "clips"
SHARED = ROOT.parent / "shared" / "data" / "action_clips"


def frames() -> dict[str, np.ndarray]:
    """One real frame per size: the clips' own, and one scaled to camera sizes."""
    out = {}
    for name in ("v_Basketball_g01_c02.mp4", "mmaction2_test_v_ApplyEyeMakeup.avi"):
        frame = decode_video(CLIPS / name, lambda count, fps: np.array([count // 2]))[0][0]
        out[f"{frame.shape[1]}x{frame.shape[0]}"] = frame
    if (SHARED / "Tw2yXa6CzWE.mp4").exists():
        frame = decode_video(SHARED / "Tw2yXa6CzWE.mp4", lambda count, fps: np.array([count // 2]))[0][0]
        out[f"{frame.shape[1]}x{frame.shape[0]}"] = frame
    base = out["340x256"]
    for w, h in ((1280, 720), (1920, 1080)):
        out[f"{w}x{h}"] = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for size, frame in frames().items():
        times = {"legacy": [], "reference": []}
        for _ in range(args.reps):
            for name, spec in (("legacy", LEGACY), ("reference", REFERENCE)):
                t = time.perf_counter()
                spec.center_crop(frame, 224)
                times[name].append(time.perf_counter() - t)
        legacy, reference = (statistics.median(times[k]) * 1e6 for k in ("legacy", "reference"))
        results.append({"size": size, "legacy_us": round(legacy, 1), "reference_us": round(reference, 1),
                        "reference_over_legacy": round(reference / legacy, 3)})
        print(f"{size:>10}: legacy {legacy:8.1f} us, reference {reference:8.1f} us, ratio {reference / legacy:.2f}")
    info = {"opencv": cv2.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "cv2_threads": cv2.getNumThreads(), "reps": args.reps}
    print(json.dumps(info))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
