"""Clips for calibration and the gates, decoded and cropped exactly as the runtime sees them.

Videos come from a folder or a `path [label]` list, shuffled with a seed; frames are picked by the
bundle's sampling spec (froster_edge.sampling) and resized/centre-cropped to uint8 RGB by its
spatial spec (froster_edge.spatial). The same seed and videos give the same clips, which is what
makes the calibration cache key meaningful. Videos that fail to decode are skipped and named.

See docs/calibration.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np

from ..data.lists import VideoItem
from ..errors import ConfigError
from ..sampling import SamplingSpec
from ..spatial import REFERENCE, SpatialSpec
from ..video import VideoError, decode_video, stream_timing


@dataclass
class ClipSet:
    """uint8 clips (N, T, S, S, 3), the video each came from, its label (-1 if none), the skipped videos."""

    frames: np.ndarray
    sources: list[str]
    labels: np.ndarray
    skipped: list[str] = field(default_factory=list)

    def digest(self) -> str:
        """sha256 of the pixels: identifies the calibration data in cache keys."""
        return hashlib.sha256(np.ascontiguousarray(self.frames).tobytes()).hexdigest()


def sample_clips(items: list[VideoItem], sampling: SamplingSpec, size: int, max_clips: int, seed: int = 0,
                 clips_per_video: int = 1, random_start: bool = True, spatial: SpatialSpec = REFERENCE) -> ClipSet:
    """Up to `max_clips` clips from shuffled `items`: random starts, or the spec's `clips_per_video` test views,
    each frame cropped by `spatial` (the bundle's)."""
    num_frames = sampling.num_frames
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(items))
    clips, sources, labels, skipped = [], [], [], []
    for i in order:
        if len(clips) >= max_clips:
            break
        item = items[int(i)]
        n = min(clips_per_video, max_clips - len(clips))
        timed = sampling.uses_timing and stream_timing(item.path)
        # the decoder may ask twice (the container's count, then the decoded one): the same draws both times
        temporal_seed = int(rng.integers(2**63))

        def select(count: int, fps: float, n: int = n, timed: bool = timed, temporal_seed: int = temporal_seed) -> np.ndarray:
            if random_start:
                draws = np.random.default_rng(temporal_seed)
                return np.concatenate([sampling.train_indices(count, fps, draws, timed) for _ in range(n)])
            return sampling.view_indices(count, fps, n, timed).reshape(-1)

        try:
            frames, _ = decode_video(item.path, select)
        except VideoError as e:
            skipped.append(str(e))
            continue
        for clip in frames.reshape(n, num_frames, *frames.shape[1:]):
            clips.append(np.stack([spatial.center_crop(f, size) for f in clip]))
            sources.append(str(item.path))
            labels.append(item.label)
    if not clips:
        raise ConfigError(f"none of the {len(items)} videos could be decoded" + (f" (first: {skipped[0]})" if skipped else ""))
    return ClipSet(np.stack(clips), sources, np.array(labels, np.int64), skipped)


def split_held_out(items: list[VideoItem], fraction: float, seed: int) -> tuple[list[VideoItem], list[VideoItem]]:
    """Calibration and held-out videos, disjoint: the gate never measures on what calibration saw."""
    if len(items) < 2:
        raise ConfigError("need at least 2 videos to hold some out for the gate (or pass --held-out)")
    order = np.random.default_rng(seed + 1).permutation(len(items))
    n_held = min(len(items) - 1, max(1, round(len(items) * fraction)))
    held = {int(i) for i in order[:n_held]}
    return [v for i, v in enumerate(items) if i not in held], [v for i, v in enumerate(items) if i in held]
