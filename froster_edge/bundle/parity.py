"""Parity gates: the exported graphs must compute what the torch student computes (no torch here).

Real clips run through the exported model and through torch (`froster_edge.export.reference`);
the largest absolute difference, smallest cosine and top-1 agreement go into the manifest, and a
broken gate fails the export. fp16 models are compared with the fp32 result. The same arithmetic
(`compare`, `run_in_streams`) serves calibration's INT8 gate.

See docs/export.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ParityError
from ..spatial import REFERENCE, SpatialSpec
from ..video import VideoError, decode_video, uniform_indices
from .labels import LabelTable
from .sessions import VideoEncoder


@dataclass(frozen=True)
class ParityClips:
    """uint8 clips (N, T, S, S, 3) and where they came from."""

    frames: np.ndarray
    sources: list[str]
    synthetic: bool
    skipped: list[str]


def load_parity_clips(videos: list[Path], num_frames: int, size: int, max_clips: int = 8, seed: int = 0,
                      spatial: SpatialSpec = REFERENCE) -> ParityClips:
    """One evenly spread clip per video, cropped by `spatial` as the runtime crops it; noise clips only if
    no video decodes."""
    clips, sources, skipped = [], [], []
    for path in videos:
        if len(clips) >= max_clips:
            break
        try:
            picked, _ = decode_video(path, lambda count, fps: uniform_indices(count, num_frames))  # RGB for T frames only
        except VideoError as e:
            skipped.append(str(e))
            continue
        clips.append(np.stack([spatial.center_crop(frame, size) for frame in picked]))
        sources.append(Path(path).name)
    if clips:
        return ParityClips(np.stack(clips), sources, False, skipped)
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (2, num_frames, size, size, 3), dtype=np.uint8)
    return ParityClips(frames, ["uniform noise"] * 2, True, skipped)


def run_in_streams(encode: VideoEncoder, clips: np.ndarray, streams: int) -> np.ndarray:
    """Feed clips through an encoder fixed at `streams` clips per call (the last call is padded)."""
    out = []
    for i in range(0, len(clips), streams):
        batch = clips[i:i + streams]
        pad = streams - len(batch)
        if pad:
            batch = np.concatenate([batch, np.repeat(batch[-1:], pad, axis=0)])
        out.append(encode(batch)[:streams - pad])
    return np.concatenate(out)


def cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    """The cosine between matching rows of two embedding arrays (float64)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return (got * want).sum(-1) / np.maximum(np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1), 1e-12)


def compare(got: np.ndarray, want: np.ndarray, table: LabelTable | None = None) -> dict[str, float]:
    """max |got - want|, the smallest cosine between matching rows, and top-1 agreement on `table`."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    cos = cosines(got, want)
    stats = {"max_abs": float(np.abs(got - want).max()), "min_cosine": float(cos.min()), "n": int(len(got))}
    if table is not None:
        agree = (got @ table.embeddings.T).argmax(-1) == (want @ table.embeddings.T).argmax(-1)
        stats["top1_agreement"] = float(agree.mean())
    return stats


def gate(name: str, stats: dict[str, float], min_cosine: float, min_top1: float, max_abs: float | None = None) -> dict:
    """Attach thresholds and a verdict to `stats`."""
    checks = [stats["min_cosine"] >= min_cosine, stats.get("top1_agreement", 1.0) >= min_top1]
    if max_abs is not None:
        checks.append(stats["max_abs"] <= max_abs)
    thresholds = {"min_cosine": min_cosine, "min_top1_agreement": min_top1, **({"max_abs": max_abs} if max_abs is not None else {})}
    return {"name": name, **stats, "thresholds": thresholds, "passed": bool(all(checks))}


def require_passed(results: list[dict]) -> None:
    """ParityError naming each broken gate with its numbers."""
    broken = [r for r in results if not r["passed"]]
    if broken:
        parts = [f"{r['name']}: max_abs {r['max_abs']:.2e}, min cosine {r['min_cosine']:.6f}"
                 + (f", top-1 agreement {r['top1_agreement']:.0%}" if "top1_agreement" in r else "")
                 + f" (needs {r['thresholds']})" for r in broken]
        raise ParityError("parity gate failed: " + "; ".join(parts))


