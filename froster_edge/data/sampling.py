"""Which frames a clip takes, and the spatial transforms of training and test (numpy, no torch).

Temporal sampling (FROSTER: T frames at stride 16 at ~30 fps):
- step = stride x fps / reference_fps source frames between two sampled frames (the stride is
  defined at 30 fps, so a 25 fps video steps 13.33 frames); stride itself when fps is unknown.
- a clip starting at `start` takes frames floor(start + k x step + 0.5), k = 0..T-1.
- its span is (T-1) x step; starts range over [0, count-1-span].
- training: one clip, start uniform over that range; test: `views` clips, starts evenly spaced
  from the first possible start to the last (the centre one when views = 1).
- short videos (span > count-1), the stated rule: the clip covers the whole video evenly
  (step = (count-1)/(T-1)), so every view is the same and frames repeat only when the video
  has fewer than T frames (2 frames, T=4 -> 0 0 1 1). The reference code instead clamps to the
  last frame (a 32-frame video at T=8 gives 0 16 31 31 31 31 31 31); we do not copy that.

Spatial: training scales the short side to a random integer size in [S, S x 256/224]
(FROSTER's [224, 256] at S = 224), takes a random S x S crop and flips horizontally with
probability 1/2, the same for every frame of the clip; test scales the short side to S and
takes the centre crop (as `froster_edge.video.resize_center_crop`).
"""

from __future__ import annotations

import cv2
import numpy as np

JITTER_RATIO = 256 / 224  # FROSTER's short-side jitter [224, 256], relative to the crop size


def frame_step(fps: float, stride: int, reference_fps: float = 30.0) -> float:
    """Source frames between sampled frames: `stride` at `reference_fps`, scaled to the video's fps."""
    return stride * fps / reference_fps if fps > 0 else float(stride)


def clip_placement(count: int, fps: float, num_frames: int, stride: int = 16,
                   reference_fps: float = 30.0) -> tuple[float, float]:
    """(step, last possible start) of a T-frame clip in a video of `count` frames.

    A video shorter than the clip's span gets the step that spreads the clip over all of it.
    """
    step = frame_step(fps, stride, reference_fps)
    if num_frames > 1 and step * (num_frames - 1) > count - 1:
        step = (count - 1) / (num_frames - 1)
    return step, max(0.0, count - 1 - step * (num_frames - 1))


def clip_frames(count: int, start: float, step: float, num_frames: int) -> np.ndarray:
    """floor(start + k*step + 0.5) for k < T, kept inside the video. -> (T,) int64"""
    # + 1e-6: an exact half (which float steps such as 40/3 can land a hair under) rounds up
    idx = np.floor(start + step * np.arange(num_frames) + 0.5 + 1e-6).astype(np.int64)
    return np.clip(idx, 0, count - 1)


def train_clip_indices(count: int, fps: float, num_frames: int, rng: np.random.Generator,
                       stride: int = 16, reference_fps: float = 30.0) -> np.ndarray:
    """One random clip of T frames at the fps-scaled stride. -> (T,) int64"""
    step, last_start = clip_placement(count, fps, num_frames, stride, reference_fps)
    start = rng.uniform(0.0, last_start) if last_start > 0 else 0.0
    return clip_frames(count, start, step, num_frames)


def eval_clip_indices(count: int, fps: float, num_frames: int, views: int = 3,
                      stride: int = 16, reference_fps: float = 30.0) -> np.ndarray:
    """`views` clips with evenly spaced starts, first to last possible. -> (views, T) int64"""
    step, last_start = clip_placement(count, fps, num_frames, stride, reference_fps)
    starts = [last_start / 2] if views == 1 else [last_start * v / (views - 1) for v in range(views)]
    return np.stack([clip_frames(count, s, step, num_frames) for s in starts])


def train_transform(frames: np.ndarray, size: int, rng: np.random.Generator,
                    jitter_ratio: float = JITTER_RATIO, flip_p: float = 0.5) -> np.ndarray:
    """Short-side jitter, random crop, random flip, shared by all frames. uint8 (T,H,W,3) -> (T,S,S,3)

    Draws from `rng` in a fixed order: short side, crop top, crop left, flip.
    """
    short = int(rng.integers(size, round(size * jitter_ratio) + 1))
    h, w = frames.shape[1:3]
    scale = short / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    top = int(rng.integers(0, nh - size + 1))
    left = int(rng.integers(0, nw - size + 1))
    flip = bool(rng.random() < flip_p)
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for t, frame in enumerate(frames):
        crop = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_CUBIC)[top:top + size, left:left + size]
        out[t] = crop[:, ::-1] if flip else crop
    return out
