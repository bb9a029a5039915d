"""Which source frames a clip takes: one spec for training, eval, calibration and the runtime.

numpy only. A `SamplingSpec` is saved with the student, copied into the manifest by export and read
by eval, calibrate and run, so a model is deployed on frames picked as in its training.
The reference rule (FROSTER's PySlowFast decoder): a clip spans L = max(1, T * stride * fps / 30)
frames, its T indices linspace(s, s + L - 1, T) truncated and clamped to the last frame, so a short
video repeats its last frame; s in [0, count - L], test views at v * floor((count - L) / (V - 1)).
A container that reports a stream duration is decoded selectively instead: W = ceil(stride *
(T - 1) * fps / 30) frames plus one from s in [0, count - W], linspace(0, L - 1, T) over them,
clamped to them; test views at s = (count - W) * v / V. Training draws s uniformly.
The "even" rule spaces frames `stride` apart at 30 fps, rounded to the nearest, spreading a short
video evenly. The streaming ticker takes frames R(k * P): on a file, the clips of the untimed
placement starting at each tick (its first decision is eval's first view: runtime/assembly.py).

See docs/deviations.md.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Literal, Mapping

import numpy as np

from .errors import ConfigError

Rule = Literal["reference", "even"]
Rounding = Literal["floor", "nearest"]
ShortRule = Literal["clamp", "spread"]
Placement = Literal["reference", "even"]

_EPS = 1e-6  # float positions within this of an integer count as that integer
# (rounding, short-video rule, placement) of each named rule
_RULES: dict[str, tuple[str, str, str]] = {
    "reference": ("floor", "clamp", "reference"),
    "even": ("nearest", "spread", "even"),
}


@dataclass
class SamplingConfig:
    """How a student's clips are sampled, as its config (`student.sampling`) holds it.

    rule: "reference" (FROSTER's decoder, the default) or "even" (evenly spread clips).
    stride: the reference's SAMPLING_RATE: a clip spans num_frames x stride frames at
      reference_fps ("reference"), or its frames are stride apart ("even").
    rounding / short / placement: override one part of the rule (null: the rule's own).
    """

    rule: Rule = "reference"
    stride: float = 16.0
    reference_fps: float = 30.0
    rounding: Rounding | None = None
    short: ShortRule | None = None
    placement: Placement | None = None

    def __post_init__(self) -> None:
        if self.rule not in _RULES:
            raise ConfigError(f"sampling.rule must be one of {', '.join(_RULES)}, got {self.rule!r}")
        if not self.stride > 0:
            raise ConfigError(f"sampling.stride must be > 0, got {self.stride}")
        if not self.reference_fps > 0:
            raise ConfigError(f"sampling.reference_fps must be > 0, got {self.reference_fps}")
        for name, allowed in (("rounding", ("floor", "nearest")), ("short", ("clamp", "spread")),
                              ("placement", ("reference", "even"))):
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ConfigError(f"sampling.{name} must be one of {', '.join(allowed)} or null, got {value!r}")

    def spec(self, num_frames: int) -> "SamplingSpec":
        """The complete spec for clips of `num_frames` frames."""
        rounding, short, placement = _RULES[self.rule]
        window = num_frames * self.stride if self.rule == "reference" else (num_frames - 1) * self.stride + 1
        return SamplingSpec(num_frames, float(window), self.reference_fps, self.rounding or rounding,
                            self.short or short, self.placement or placement, self.rule, float(self.stride))


@dataclass(frozen=True)
class SamplingSpec:
    """Everything that decides a clip's frames (the manifest's `preprocessing.sampling`).

    window: frames one clip spans at reference_fps (scaled by the video's fps): its T indices
    are spread over window - 1 frames, i.e. `spacing` apart.
    """

    num_frames: int = 8
    window: float = 128.0
    reference_fps: float = 30.0
    rounding: Rounding = "floor"
    short: ShortRule = "clamp"
    placement: Placement = "reference"
    rule: Rule = "reference"  # the named rule it came from (it decides how the spacing scales with fps)
    stride: float = 16.0  # provenance

    def __post_init__(self) -> None:
        if self.num_frames < 1 or not self.window >= 1 or not self.reference_fps > 0:
            raise ConfigError(f"bad sampling spec: num_frames {self.num_frames}, window {self.window}, "
                              f"reference_fps {self.reference_fps}")
        if self.rounding not in ("floor", "nearest") or self.short not in ("clamp", "spread") \
                or self.placement not in ("reference", "even"):
            raise ConfigError(f"bad sampling spec: rounding {self.rounding!r}, short {self.short!r}, "
                              f"placement {self.placement!r}")

    # --- serialised form -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_manifest(cls, sampling: Mapping[str, Any] | None, num_frames: int) -> "SamplingSpec":
        """The spec a manifest or student config recorded; one written before specs existed (no
        `window`: `{stride, reference_fps}` or nothing) reads as the reference default."""
        if not sampling or "window" not in sampling:
            return SamplingConfig().spec(num_frames)
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            spec = cls(**{k: v for k, v in sampling.items() if k in known})
        except (TypeError, ValueError) as e:
            raise ConfigError(f"unreadable sampling spec {dict(sampling)}: {e}") from e
        if spec.num_frames != num_frames:
            raise ConfigError(f"the sampling spec is for {spec.num_frames} frames but the model takes {num_frames}")
        return spec

    def describe(self) -> str:
        return (f"{self.rule} rule: T={self.num_frames} over {self.window:g} frames at {self.reference_fps:g} fps "
                f"({self.spacing(self.reference_fps):.2f} apart), {self.rounding}, short videos {self.short}")

    # --- arithmetic -------------------------------------------------------------------------

    def _fps(self, fps: float) -> float:
        return fps if fps and fps > 0 else self.reference_fps  # unknown fps: the reference's

    def window_frames(self, fps: float) -> float:
        """L: source frames one clip spans at this fps."""
        return max(1.0, self.window * self._fps(fps) / self.reference_fps)

    def spacing(self, fps: float) -> float:
        """Source frames between two sampled frames at this fps: (L - 1) / (T - 1) by the reference
        (the window is scaled, then spread); the even rule scales the spacing itself."""
        if self.num_frames == 1:
            return 0.0
        if self.rule == "even":
            return (self.window - 1.0) * self._fps(fps) / self.reference_fps / (self.num_frames - 1)
        return (self.window_frames(fps) - 1.0) / (self.num_frames - 1)

    def _selected_window(self, fps: float) -> float:
        """W: the frames a container with a duration decodes for one clip (reference placement)."""
        return max(1.0, math.ceil(self.window / self.num_frames * (self.num_frames - 1) * self._fps(fps)
                                  / self.reference_fps - 1e-9))

    def _round(self, x: np.ndarray) -> np.ndarray:
        return np.floor(x + (0.5 if self.rounding == "nearest" else 0.0) + _EPS).astype(np.int64)

    def _short_spacing(self, count: int, fps: float) -> float:
        step = self.spacing(fps)
        if self.short == "spread" and self.num_frames > 1 and step * (self.num_frames - 1) > count - 1:
            return (count - 1) / (self.num_frames - 1)
        return step

    def max_start(self, count: int, fps: float, timed: float) -> float:
        """The last start a clip may take in a video of `count` frames."""
        if self.placement == "reference":
            size = self._selected_window(fps) if timed else self.window_frames(fps)
            return max(float(count) - size, 0.0)
        return max(0.0, count - 1 - self._short_spacing(count, fps) * (self.num_frames - 1))

    def clip(self, count: int, fps: float, start: float, timed: float = 0.0) -> np.ndarray:
        """The T frame indices of the clip starting at `start`. -> (T,) int64

        timed: the container's pts per frame when it reports a stream duration, else 0 (decides
        the reference's window; True: a duration whose time base is unknown, frames counted whole).
        """
        if count < 1:
            raise ConfigError("cannot sample from a video with no frames")
        k = np.arange(self.num_frames, dtype=np.float64)
        step = self._short_spacing(count, fps)
        if self.placement == "reference" and timed:
            end = start + self._selected_window(fps) - 1
            if isinstance(timed, bool):
                first, last = math.ceil(start - _EPS), math.floor(end + _EPS)
            else:  # frames whose pts lie in [int(start * pts/frame), int(end * pts/frame)], as PyAV seeks them
                ppf = float(timed)
                first, last = math.ceil(int(start * ppf) / ppf - 1e-9), math.floor(int(end * ppf) / ppf + 1e-9)
            last = min(count - 1, last + 1)  # + the frame after (the decoder's buffer)
            local = np.minimum(self._round(k * step), max(0, last - first))
            return np.minimum(first + local, count - 1)
        return np.clip(self._round(start + k * step), 0, count - 1)

    def train_start(self, count: int, fps: float, rng: np.random.Generator, timed: float = 0.0) -> float:
        """A uniformly random start, as training draws it."""
        top = self.max_start(count, fps, timed)
        return float(rng.uniform(0.0, top)) if top > 0 else 0.0

    def view_starts(self, count: int, fps: float, views: int, timed: float = 0.0) -> list[float]:
        """The starts of the `views` test clips."""
        top = self.max_start(count, fps, timed)
        if self.placement == "reference":
            if timed:
                return [top * v / views for v in range(views)]
            if views == 1:
                return [float(math.floor(top / 2))]
            return [float(v * math.floor(top / (views - 1))) for v in range(views)]
        return [top / 2] if views == 1 else [top * v / (views - 1) for v in range(views)]

    def train_indices(self, count: int, fps: float, rng: np.random.Generator, timed: float = 0.0) -> np.ndarray:
        """One training clip at a random start. -> (T,) int64"""
        return self.clip(count, fps, self.train_start(count, fps, rng, timed), timed)

    def view_indices(self, count: int, fps: float, views: int, timed: float = 0.0) -> np.ndarray:
        """The test views. -> (views, T) int64"""
        return np.stack([self.clip(count, fps, s, timed) for s in self.view_starts(count, fps, views, timed)])

    @property
    def uses_timing(self) -> bool:
        """Whether clips depend on the container reporting a stream duration (video.has_stream_duration)."""
        return self.placement == "reference"

    # --- streaming ----------------------------------------------------------------------------

    def ticker(self, fps: float, period: float | None = None) -> "Ticker":
        """The streaming sampler at this fps (or at `period` source frames between ticks)."""
        return Ticker(max(1.0, self.spacing(fps) if period is None else period), self.rounding)


class Ticker:
    """Takes the frames R(k * period), k = 0, 1, ...: frame positions (in source frames, floats
    for live sources) arrive in order; a tick whose frame was missed (a live source stalled) is
    skipped, never caught up with a burst."""

    def __init__(self, period: float, rounding: str = "floor"):
        if not period > 0:
            raise ConfigError(f"sampling period must be positive, not {period}")
        self.period = period
        self.offset = 0.5 if rounding == "nearest" else 0.0
        self._next = 0  # index k of the next tick

    def _frame(self, k: int) -> int:
        return math.floor(k * self.period + self.offset + _EPS)

    def take(self, position: float) -> bool:
        if position + _EPS < self._frame(self._next):
            return False
        while self._frame(self._next) <= position + _EPS:  # ticks already passed are skipped
            self._next += 1
        return True

    def is_sampled(self, index: int) -> bool:
        """Stateless twin of `take` for consecutive frame indices (a file reader's prefilter)."""
        k = max(0, math.ceil((index - self.offset - _EPS) / self.period - 1e-9))
        while self._frame(k) < index:
            k += 1
        return self._frame(k) == index
