"""Clip assembly for one stream: which frames are sampled, a ring buffer of T frames, when to decide.

Plain single-threaded logic (the pipeline runs it on each stream's assembler thread), no torch.

The rule: with a period P (in source frames for files read as fast as possible, in seconds for
cameras, streams and --realtime files), the ticks are 0, P, 2P, ... from the stream's start, and
a frame is sampled when its position is the first to reach the next tick. For a 30 fps file at
the training's default (P = 16 frames) that is frames 0, 16, 32, ...; at 29.97 fps P = 15.98 and
frame ceil(k * P) is taken. A live source that stalls skips the ticks it missed instead of
catching up with a burst. A decision is due after the T-th sampled frame and then every `hop`
sampled frames: n sampled frames give max(0, (n - T) // hop + 1) decisions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .options import SamplingOptions

_EPS = 1e-6  # positions equal to a tick up to float rounding count as reaching it


@dataclass(frozen=True)
class SampleRule:
    """The sampling rate: a target rate in sampled frames per second, or a fixed frame stride."""

    fps: float | None
    subsample: int | None

    @classmethod
    def from_options(cls, options: SamplingOptions, preprocessing: dict) -> "SampleRule":
        """The options' rate, else the bundle's training rule (one frame every `stride` at `reference_fps`)."""
        if options.subsample is not None:
            return cls(None, options.subsample)
        if options.fps is not None:
            return cls(options.fps, None)
        sampling = preprocessing.get("sampling") or {}
        stride, reference = sampling.get("stride", 16), sampling.get("reference_fps", 30.0)
        if not (stride and reference and stride > 0 and reference > 0):
            raise ConfigError(f"the bundle's sampling {sampling} is not usable: give --sample-fps or --subsample")
        return cls(float(reference) / float(stride), None)

    def period_frames(self, source_fps: float) -> float:
        """Source frames between two sampled frames (at least 1)."""
        period = float(self.subsample) if self.subsample is not None else source_fps / float(self.fps)
        return max(1.0, period)

    def describe(self, source_fps: float) -> str:
        rate = f"every {self.subsample} frames" if self.subsample is not None else f"{self.fps:.4g} sampled fps"
        return f"{rate} (1 frame in {self.period_frames(source_fps):.2f} at {source_fps:.4g} fps)"


class Sampler:
    """Takes a frame when its position (frame index or seconds) reaches the next tick k * period."""

    def __init__(self, period: float):
        if not period > 0:
            raise ConfigError(f"sampling period must be positive, not {period}")
        self.period = period
        self._next = 0  # index k of the next tick

    def take(self, position: float) -> bool:
        if position + _EPS < self._next * self.period:
            return False
        self._next = math.floor((position + _EPS) / self.period) + 1  # ticks already passed are skipped
        return True


def is_sampled_index(index: int, period: float) -> bool:
    """Stateless twin of Sampler.take for consecutive frame indices: lets a file reader skip
    converting frames no clip will use. True iff a tick k * period lies in (index - 1, index]."""
    period = max(1.0, period)
    return index == 0 or math.floor((index + _EPS) / period) != math.floor((index - 1 + _EPS) / period)


class ClipRing:
    """The last T preprocessed frames of a stream, preallocated; `clip()` copies them out oldest first."""

    def __init__(self, num_frames: int, size: int):
        self.frames = np.zeros((num_frames, size, size, 3), np.uint8)  # (T, S, S, 3)
        self.count = 0  # frames pushed since the start

    def push(self, frame: np.ndarray) -> None:
        self.frames[self.count % len(self.frames)] = frame
        self.count += 1

    @property
    def full(self) -> bool:
        return self.count >= len(self.frames)

    def clip(self) -> np.ndarray:
        t = len(self.frames)
        return self.frames[(self.count + np.arange(t)) % t]  # (T, S, S, 3), a copy


class ClipAssembler:
    """Sampler + ring buffer + hop for one stream: `add` returns a clip when a decision is due."""

    def __init__(self, num_frames: int, size: int, hop: int, period: float):
        if hop < 1:
            raise ConfigError(f"hop must be at least 1, not {hop}")
        self.sampler = Sampler(period)
        self.ring = ClipRing(num_frames, size)
        self.hop = hop

    def wants(self, position: float) -> bool:
        return self.sampler.take(position)

    def restart(self) -> None:
        """Forget the buffered frames (the source reconnected: a clip must not span the gap)."""
        self.ring.count = 0

    def add(self, frame: np.ndarray) -> np.ndarray | None:
        self.ring.push(frame)
        due = self.ring.full and (self.ring.count - len(self.ring.frames)) % self.hop == 0
        return self.ring.clip() if due else None
