"""Decoding speed of the data pipeline: clips/s of one worker, and of a DataLoader with workers.

One worker = one process with one torch and one OpenCV thread, as `make_loader` sets them up.
Rates are given per wall second and per CPU second: on a machine shared with other jobs the
wall rate drops, the CPU rate (what one busy core delivers) holds.
A "clip" is what a training step or an evaluation consumes: in training one random T-frame clip
with jitter/crop/flip; in testing 3 views x T frames, centre-cropped; both CLIP-normalised
float32. Every frame of a video is decoded (counts come from decoding), only the chosen ones are
converted to RGB. Videos: examples/clips, plus ../shared/data/action_clips when present.

Usage:
    python benchmarks/bench_decode.py [--frames 8] [--size 224] [--rounds 3] [--workers 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from froster_edge.data import VideoDataset, VideoItem, make_loader
from froster_edge.info import environment
from froster_edge.sampling import SamplingConfig
from froster_edge.video import decode_video

ROOT = Path(__file__).resolve().parents[1]
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".webm", ".mov"}


def find_videos() -> list[Path]:
    folders = [ROOT / "examples" / "clips", ROOT.parent / "shared" / "data" / "action_clips"]
    return sorted(p for f in folders if f.is_dir() for p in f.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)


def one_worker(ds: VideoDataset, rounds: int) -> dict:
    """Samples in this process, single-threaded, `rounds` passes over the list (epochs differ)."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    ds[0]  # warm-up: imports, codec initialisation
    t0, c0 = time.perf_counter(), time.process_time()
    for r in range(rounds):
        ds.set_epoch(r)
        for i in range(len(ds)):
            ds[i]
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = rounds * len(ds)
    return {"clips": n, "seconds": seconds, "clips_per_s": n / seconds, "cpu_s": cpu, "clips_per_cpu_s": n / cpu}


def decode_only(items: list[VideoItem], frames: int, rounds: int) -> dict:
    """The decoding alone (every frame decoded, T converted to RGB), per CPU second, one thread."""
    cv2.setNumThreads(1)
    spec = SamplingConfig().spec(frames)
    select = lambda n, fps: spec.train_indices(n, fps, np.random.default_rng(0))  # noqa: E731
    c0 = time.process_time()
    for _ in range(rounds):
        for it in items:
            decode_video(it.path, select)
    cpu = time.process_time() - c0
    return {"videos": rounds * len(items), "cpu_s": cpu, "videos_per_cpu_s": rounds * len(items) / cpu}


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process (Linux /proc), None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def loader_rate(ds: VideoDataset, workers: int, rounds: int, batch_size: int) -> dict:
    """Clips/s delivered by a DataLoader with `workers` persistent workers (start-up included), and
    per CPU second of those workers (read from /proc before they exit)."""
    loader = make_loader(ds, batch_size, num_workers=workers, shuffle=True, persistent_workers=True)
    t0 = time.perf_counter()
    n = 0
    for r in range(rounds):
        ds.set_epoch(r)
        for batch in loader:
            n += len(batch["label"])
    seconds = time.perf_counter() - t0
    cpus = [_cpu_seconds(w.pid) for w in loader._iterator._workers]  # private attribute: the pids
    cpu = sum(cpus) if None not in cpus else None
    del loader
    return {"workers": workers, "clips": n, "seconds": seconds, "clips_per_s": n / seconds, "worker_cpu_s": cpu,
            "clips_per_worker_cpu_s": n / cpu if cpu else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--views", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    videos = find_videos()
    items = [VideoItem(p, 0) for p in videos]
    env = environment()
    result: dict = {"machine": {k: env[k] for k in ("cpu", "python", "torch", "gpus")},
                    "opencv": cv2.__version__, "videos": len(videos), "frames": args.frames, "size": args.size}
    try:
        import av

        result["pyav"] = av.__version__
    except ImportError:
        result["pyav"] = "not installed"
    result["decode_only"] = decode_only(items, args.frames, args.rounds)
    for mode, train in (("train", True), ("test", False)):
        ds = VideoDataset(items, num_frames=args.frames, image_size=args.size, train=train, views=args.views)
        result[mode] = {"one_worker": one_worker(ds, args.rounds),
                        "loader": loader_rate(ds, args.workers, args.rounds, args.batch)}
    print(f"machine: {env['cpu']}, {torch.get_num_threads()} torch threads here, OpenCV {cv2.__version__}, "
          f"PyAV {result['pyav']}, torch {env['torch']}; {len(videos)} videos")
    d = result["decode_only"]
    print(f"decoding alone: {d['videos_per_cpu_s']:.1f} videos per CPU s")
    for mode in ("train", "test"):
        w, ld = result[mode]["one_worker"], result[mode]["loader"]
        what = f"1 clip of {args.frames}x{args.size}px" if mode == "train" else f"{args.views} views x {args.frames}x{args.size}px"
        print(f"{mode:5s} ({what}): one worker {w['clips_per_s']:.1f} clips/s ({w['clips_per_cpu_s']:.1f} per CPU s); "
              f"DataLoader with {ld['workers']} workers {ld['clips_per_s']:.1f} clips/s "
              f"({ld['clips_per_worker_cpu_s'] or 0:.1f} per worker CPU s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
