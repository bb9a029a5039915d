"""The spatial transforms of training and test clips (numpy, no torch).

Training scales the short side to a random size in [S, S x 256/224], takes a random S x S crop and
flips with probability 1/2, the same for every frame; test scales the short side to S and takes the
centre crop. Which frames a clip takes is `froster_edge.sampling`.

See docs/training.md.
"""

from __future__ import annotations

import cv2
import numpy as np

JITTER_RATIO = 256 / 224  # FROSTER's short-side jitter [224, 256], relative to the crop size


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
