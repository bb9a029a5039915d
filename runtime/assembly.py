"""Clip assembly for one stream: which frames are sampled, a ring buffer of T frames, when to decide.

Plain single-threaded logic, no torch. Ticks fall every P source frames (P = the bundle's sampling
spec's spacing at the source's fps, unless --sample-fps or --subsample override it) and frame
R(k x P) is taken, R the spec's rounding. Positions are frame indices, or seconds x fps for live and
--realtime sources, where a stall skips missed ticks. A decision is due after the T-th sampled
frame, then every `hop` (n sampled frames give max(0, (n - T) // hop + 1) decisions); a file that
ends before its first decision gets one over what it has (`finish`), marked short. On a file whose
container reports a duration the first decision is taken on the reference's selective-window clip,
exactly eval's first view, as soon as its last frame arrives (`take_first`); later ones are the ticks'.

See docs/runtime.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..sampling import SamplingSpec, Ticker
from .options import SamplingOptions


@dataclass(frozen=True)
class SampleRule:
    """The bundle's sampling spec, and the options' spacing when they override it."""

    spec: SamplingSpec
    fps: float | None = None  # --sample-fps: sampled frames per second of video
    subsample: int | None = None  # --subsample: every Nth source frame

    @classmethod
    def from_options(cls, options: SamplingOptions, preprocessing: dict) -> "SampleRule":
        """The bundle's spec (`preprocessing.sampling`; one from before specs: the reference default)."""
        spec = SamplingSpec.from_manifest(preprocessing.get("sampling"), int(preprocessing.get("num_frames", 8)))
        return cls(spec, options.fps, options.subsample)

    def period_frames(self, source_fps: float) -> float:
        """Source frames between two sampled frames (at least 1)."""
        if self.subsample is not None:
            period = float(self.subsample)
        elif self.fps is not None:
            period = source_fps / float(self.fps)
        else:
            period = self.spec.spacing(source_fps)
        return max(1.0, period)

    def ticker(self, source_fps: float) -> Ticker:
        return self.spec.ticker(source_fps, self.period_frames(source_fps))

    def sampled_per_second(self, source_fps: float) -> float:
        return source_fps / self.period_frames(source_fps)

    def describe(self, source_fps: float) -> str:
        if self.subsample is not None:
            rate = f"every {self.subsample} frames"
        elif self.fps is not None:
            rate = f"{self.fps:.4g} sampled fps"
        else:
            rate = f"the bundle's {self.spec.rule} rule"
        return f"{rate} (1 frame in {self.period_frames(source_fps):.2f} at {source_fps:.4g} fps)"


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
    """Ticker + ring buffer + hop for one stream: `add` returns a clip when a decision is due.

    scale: source frames per position unit (1 for frame indices, the fps for seconds).
    short: a SamplingSpec when the stream is a file: frames before the first decision are kept
    (cropped) so that `finish` can make the one short-file clip by its rule.
    first: a file's first clip by its spec (frame indices) where it is not the first T ticks: those
    frames are kept and make the first decision.
    """

    def __init__(self, num_frames: int, size: int, hop: int, period: float, rounding: str = "floor",
                 scale: float = 1.0, short: SamplingSpec | None = None, first: np.ndarray | None = None):
        if hop < 1:
            raise ConfigError(f"hop must be at least 1, not {hop}")
        self.ticker = Ticker(period, rounding)
        self.ring = ClipRing(num_frames, size)
        self.hop, self.scale, self.short = hop, scale, short
        self.first_due = self.ticker._frame(num_frames - 1)  # the frame the first decision needs
        self._early: dict[int, np.ndarray] = {}  # frame index -> crop, until the first decision
        self._decided = False
        self.first = None if first is None else [int(i) for i in first]
        if self.first is not None and self.first == [self.ticker._frame(k) for k in range(num_frames)]:
            self.first = None  # the ticks are that clip already
        self._first_taken = False

    def wants(self, position: float) -> bool:
        return self.ticker.take(position * self.scale)

    def keeps(self, index: int) -> bool:
        """Whether a frame that is not sampled is still wanted (for a short file's clip)."""
        if self._decided:
            return False
        return (self.short is not None and index <= self.first_due) or (self.first is not None and index in self.first)

    def in_first_view(self, index: int) -> bool:
        """Whether a frame is one of the file's first clip (the decision it makes is sampled from it)."""
        return self.first is not None and index in self.first

    def keep(self, index: int, crop: np.ndarray) -> None:
        if self.keeps(index):
            self._early[index] = crop

    def restart(self) -> None:
        """Forget the buffered frames (the source reconnected: a clip must not span the gap)."""
        self.ring.count = 0
        self._first_taken = False

    def take_first(self, index: int) -> np.ndarray | None:
        """The file's first clip by its spec once frame `index`, its last, is kept (call after `keep`,
        before `add`); it replaces the decision the first T ticks would have made."""
        if self.first is None or self._decided or index != self.first[-1]:
            return None
        if not all(i in self._early for i in self.first):
            return None  # a frame was missed (a paced file fell behind): the ticks decide
        clip = np.stack([self._early[i] for i in self.first])
        self._decided, self._early, self._first_taken = True, {}, True
        return clip

    def add(self, frame: np.ndarray) -> np.ndarray | None:
        self.ring.push(frame)
        due = self.ring.full and (self.ring.count - len(self.ring.frames)) % self.hop == 0
        if due and self._first_taken and self.ring.count == len(self.ring.frames):
            return None  # take_first made this decision
        if due:
            self._decided, self._early = True, {}
        return self.ring.clip() if due else None

    def finish(self, count: int, fps: float) -> np.ndarray | None:
        """At the end of a file of `count` frames that never reached a decision: the clip its
        spec takes from a video that short (start 0: the reference repeats the last frame, the
        even rule spreads over all frames), from the frames kept; None otherwise."""
        if self.short is None or self._decided or not self._early or count < 1:
            return None
        have = np.array(sorted(self._early))
        want = self.short.clip(count, fps, 0.0)
        picks = [have[max(0, np.searchsorted(have, i, side="right") - 1)] for i in want]  # at or before
        return np.stack([self._early[int(i)] for i in picks])


class RateGate:
    """At most `fps` items a second by their own timestamps: a frame a little early (a quarter
    period) still takes its tick, a late one restarts the schedule (no burst to catch up). One rule
    for the reader's prefilter (a frame sink's rate, e.g. event clips) and for the sink itself."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self._due = float("-inf")

    def take(self, t: float) -> bool:
        if t < self._due - self.period / 4:
            return False
        self._due = self._due + self.period if t - self._due < self.period else t + self.period
        return True
