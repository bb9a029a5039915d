"""The spatial transforms of training and test clips (numpy, no torch).

Which frames a clip takes is `froster_edge.sampling`; how each frame is resized and cropped is
`froster_edge.spatial`. Training jitters the short side, takes a random S x S crop and flips
horizontally with probability 1/2, the same for every frame of the clip; test takes the spec's
centre crop.

See docs/training.md.
"""

from __future__ import annotations

import numpy as np

from ..spatial import REFERENCE, SpatialSpec


def train_transform(frames: np.ndarray, size: int, rng: np.random.Generator,
                    spec: SpatialSpec = REFERENCE, flip_p: float = 0.5) -> np.ndarray:
    """Short-side jitter, random crop, random flip by `spec`, shared by all frames. uint8 (T,H,W,3) -> (T,S,S,3)

    Draws from `rng` in a fixed order: short side, crop top, crop left, flip.
    """
    return spec.train_crop(frames, size, rng, flip_p)
