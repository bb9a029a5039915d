"""Scores from video embeddings: the label table, softmax, smoothing, threshold, top-k; table hot-swap.

logits = logit_scale * embedding @ table.T / temperature, as the student classifies. Smoothing
over a stream's successive decisions is an EMA, a moving mean of `window`, or none; a smoothed
top-1 below `threshold` is "unknown" (top-k still reported). A new table resets the smoothing.

See docs/runtime.md.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..bundle.labels import LabelTable, PinnedPath, load_labels
from ..errors import FrosterError, shorten
from .options import ClassifierOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scores:
    """One decision's outcome for one stream."""

    label: str  # the top-1 class, or the unknown label under the threshold
    score: float  # smoothed top-1 probability
    top: list[tuple[str, float]]  # smoothed top-k, best first
    probs: np.ndarray | None = field(default=None, compare=False, repr=False)  # every class's smoothed probability, in table order


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Classifier:
    """Turns each stream's video embedding into Scores against the current table."""

    def __init__(self, table: LabelTable, options: ClassifierOptions):
        self.options = options
        self.table = table
        self._state: dict[int, np.ndarray | deque] = {}

    def set_table(self, table: LabelTable) -> None:
        """Swap the table (called between decisions, on the thread that classifies)."""
        self.table = table
        self._state.clear()

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, D) embeddings -> (N, C) probabilities, float64."""
        t = self.table
        logits = t.logit_scale * (embeddings.astype(np.float64) @ t.embeddings.astype(np.float64).T) / t.temperature
        return softmax(logits)

    def smooth(self, stream: int, probs: np.ndarray) -> np.ndarray:
        o = self.options
        if o.smoothing == "ema":
            prev = self._state.get(stream)
            s = probs if prev is None else o.ema_alpha * probs + (1.0 - o.ema_alpha) * prev
            self._state[stream] = s
            return s
        if o.smoothing == "mean":
            recent = self._state.setdefault(stream, deque(maxlen=o.window))
            recent.append(probs)
            return np.mean(recent, axis=0)
        return probs

    def __call__(self, streams: list[int], embeddings: np.ndarray) -> list[Scores]:
        out = []
        for stream, probs in zip(streams, self.probabilities(embeddings), strict=False):
            s = self.smooth(stream, probs)
            order = np.argsort(-s, kind="stable")[: self.options.top_k]
            top = [(self.table.names[i], float(s[i])) for i in order]
            best = top[0]
            label = best[0] if best[1] >= self.options.threshold else self.options.unknown_label
            out.append(Scores(label, best[1], top, s))
        return out


class LabelWatcher:
    """Watches the label file; a changed file is loaded and checked (model fingerprint, embedding
    size) and handed back to swap in, or rejected with one line while the old table stays, on
    any failure to load it.

    A change is a new (mtime, size, inode): an atomic replace (how froster-edge writes tables)
    always gives a new inode, and a file seen half-written is rejected now and read again when
    the writer finishes.
    """

    def __init__(self, path: Path, fingerprint: str, dim: int):
        self.path, self.fingerprint, self.dim = Path(path), fingerprint, dim
        self._pin = PinnedPath(self.path)
        self._seen = self._signature()
        self.swaps = 0
        self.rejected = 0

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def poll(self) -> LabelTable | None:
        """A new valid table, or None (unchanged, or rejected: the message is logged once per change)."""
        sig = self._signature()
        if sig == self._seen:
            return None
        self._seen = sig
        if sig is None:
            log.warning(f"labels: {self.path} was removed; keeping the current table")
            return None
        try:
            self._pin.check()
            table = load_labels(self.path, self.fingerprint, self.dim)
        except Exception as e:  # noqa: BLE001 - whatever the new file does, the live run keeps its table
            self.rejected += 1
            reason = str(e) if isinstance(e, FrosterError) else f"{type(e).__name__}: {e}"
            log.warning(f"labels: rejected the new table ({shorten(' '.join(reason.split()), 300)}); keeping the current one")
            return None
        self.swaps += 1
        log.info(f"labels: swapped in {self.path} ({len(table.names)} classes)")
        return table
