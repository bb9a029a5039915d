"""How a decoded frame becomes the model's S x S input: one spec for training, eval, calibration,
the export's gates and the runtime.

numpy and OpenCV only (no torch). A `SpatialSpec` is saved with the student, copied into the
manifest (`preprocessing.spatial`) and read by eval, calibrate and run, as the sampling spec is.
The reference rule: short side to S, long side floored, bilinear without antialiasing, test crop
at ceil((side - S) / 2); training draws the short side as round(uniform(S, round(S x 256/224))),
crop offsets from [0, side - S) and a flip. Frames are resized as uint8 (the exported model takes
uint8), which differs from the reference's float resize only by rounding each pixel to a level.
The "legacy" rule is what a student or bundle saved without a spec was made with.

See docs/deviations.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np

from .errors import ConfigError
from .opencv import cv2

Rule = Literal["reference", "legacy"]
Interpolation = Literal["bilinear", "bicubic"]
LongSide = Literal["floor", "nearest"]
Centre = Literal["ceil", "floor"]
Jitter = Literal["reference", "legacy"]

JITTER_RATIO = 256 / 224  # FROSTER's short-side jitter [224, 256], relative to the crop size
# (interpolation, long side, centre, jitter) of each named rule
_RULES: dict[str, tuple[str, str, str, str]] = {
    "reference": ("bilinear", "floor", "ceil", "reference"),
    "legacy": ("bicubic", "nearest", "floor", "legacy"),
}
_CHOICES = {"interpolation": ("bilinear", "bicubic"), "long_side": ("floor", "nearest"), "centre": ("ceil", "floor"),
            "jitter": ("reference", "legacy")}
_CV2 = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC}


@dataclass
class SpatialConfig:
    """How a student's frames are resized and cropped, as its config (`student.spatial`) holds it.

    rule: "reference" (FROSTER's transforms, the default) or "legacy" (froster-edge's earlier ones).
    interpolation / long_side / centre / jitter: override one part of the rule (null: the rule's own).
    jitter_ratio: the training short side's upper bound relative to the crop size.
    """

    rule: Rule = "reference"
    interpolation: Interpolation | None = None
    long_side: LongSide | None = None
    centre: Centre | None = None
    jitter: Jitter | None = None
    jitter_ratio: float = JITTER_RATIO

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise ConfigError(f"spatial.rule must be one of {', '.join(_RULES)}, got {self.rule!r}")
        for name, allowed in _CHOICES.items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"spatial.{name} must be one of {', '.join(allowed)} or null, got {value!r}")
        if not (isinstance(self.jitter_ratio, (int, float)) and 1.0 <= self.jitter_ratio <= 4.0):
            raise ConfigError(f"spatial.jitter_ratio must be in [1, 4], got {self.jitter_ratio!r}")

    def spec(self) -> "SpatialSpec":
        """The complete spec."""
        interpolation, long_side, centre, jitter = _RULES[self.rule]
        return SpatialSpec(self.interpolation or interpolation, self.long_side or long_side, self.centre or centre,
                           self.jitter or jitter, float(self.jitter_ratio), self.rule)


@dataclass(frozen=True)
class SpatialSpec:
    """Everything that decides a frame's pixels (the manifest's `preprocessing.spatial`)."""

    interpolation: Interpolation = "bilinear"
    long_side: LongSide = "floor"
    centre: Centre = "ceil"
    jitter: Jitter = "reference"
    jitter_ratio: float = JITTER_RATIO
    rule: Rule = "reference"  # the named rule it came from (provenance)

    def __post_init__(self) -> None:
        for name, allowed in _CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(f"bad spatial spec: {name} {getattr(self, name)!r} (one of {', '.join(allowed)})")
        if not (isinstance(self.jitter_ratio, (int, float)) and 1.0 <= self.jitter_ratio <= 4.0):
            raise ConfigError(f"bad spatial spec: jitter_ratio {self.jitter_ratio!r}")

    # --- serialised form -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_manifest(cls, spatial: Mapping[str, Any] | None) -> "SpatialSpec":
        """The spec a manifest recorded; a bundle exported before specs existed (nothing) was made
        with the legacy rule and keeps it."""
        if not spatial:
            return LEGACY
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in spatial.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"unreadable spatial spec {dict(spatial)}: {e}") from e

    def describe(self) -> str:
        return (f"{self.rule} rule: {self.interpolation}, long side {self.long_side}, crop centred by {self.centre}, "
                f"{self.jitter} jitter")

    # --- arithmetic -------------------------------------------------------------------------

    def resized_shape(self, height: int, width: int, short: int) -> tuple[int, int]:
        """(height, width) after scaling the short side to `short`."""
        if self.long_side == "floor":
            if width < height:
                return int(math.floor(float(height) / width * short)), short
            return short, int(math.floor(float(width) / height * short))
        scale = short / min(height, width)
        return max(short, round(height * scale)), max(short, round(width * scale))

    def resize(self, frame: np.ndarray, short: int) -> np.ndarray:
        """`frame` (H, W, C) uint8 with its short side scaled to `short`."""
        h, w = frame.shape[:2]
        if self.long_side == "floor" and min(h, w) == short:
            return frame  # the reference leaves a frame of the right size alone
        nh, nw = self.resized_shape(h, w, short)
        return cv2.resize(frame, (nw, nh), interpolation=_CV2[self.interpolation])

    def centre_offset(self, side: int, size: int) -> int:
        return (side - size + 1) // 2 if self.centre == "ceil" else (side - size) // 2

    def center_crop(self, frame: np.ndarray, size: int) -> np.ndarray:
        """The test view: short side to `size`, the centre `size` x `size` crop. uint8 (H, W, 3) -> (S, S, 3)"""
        resized = self.resize(frame, size)
        nh, nw = resized.shape[:2]
        top, left = self.centre_offset(nh, size), self.centre_offset(nw, size)
        return resized[top:top + size, left:left + size]

    def train_draw(self, height: int, width: int, size: int, rng: np.random.Generator,
                   flip_p: float = 0.5) -> tuple[int, int, int, bool]:
        """One training draw, in a fixed order: (short side, crop top, crop left, flip)."""
        top_short = round(size * self.jitter_ratio)
        if self.jitter == "reference":
            short = int(round(rng.uniform(size, top_short)))
        else:
            short = int(rng.integers(size, top_short + 1))
        nh, nw = (height, width) if self.long_side == "floor" and min(height, width) == short \
            else self.resized_shape(height, width, short)
        extra = 0 if self.jitter == "reference" else 1  # the reference never draws the last offset
        top = int(rng.integers(0, nh - size + extra)) if nh - size + extra > 0 else 0
        left = int(rng.integers(0, nw - size + extra)) if nw - size + extra > 0 else 0
        return short, top, left, bool(rng.random() < flip_p)

    def train_crop(self, frames: np.ndarray, size: int, rng: np.random.Generator, flip_p: float = 0.5) -> np.ndarray:
        """Short-side jitter, random crop, random flip, shared by all frames. uint8 (T,H,W,3) -> (T,S,S,3)"""
        short, top, left, flip = self.train_draw(*frames.shape[1:3], size, rng, flip_p)
        out = np.empty((len(frames), size, size, 3), np.uint8)
        for t, frame in enumerate(frames):
            crop = self.resize(frame, short)[top:top + size, left:left + size]
            out[t] = crop[:, ::-1] if flip else crop
        return out


REFERENCE = SpatialSpec()
LEGACY = SpatialConfig(rule="legacy").spec()
