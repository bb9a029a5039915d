"""What the web view shows, collected from the running pipeline without ever making it wait.

The hub is a frame sink and a decision sink of the pipeline. A frame costs the pipeline one
reference assignment (the newest frame of its stream replaces the previous one); JPEG encoding
happens on the server's threads, only while a client watches, at most `stream_fps` times a
second per stream, and one encoding is shared by every client watching that stream. Decisions
are kept per camera (the newest `recent`), numbered, with the version of the label table that
made them, so the page (and the API) can tell when a vocabulary change has reached the decisions.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..sinks import Decision
from ..sources import Frame, cv2
from .options import HttpOptions


def encode_jpeg(image: np.ndarray, width: int, quality: int) -> bytes:
    """An RGB frame scaled down to at most `width` pixels wide (never up), as JPEG bytes."""
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return data.tobytes()


@dataclass
class PendingChange:
    """A vocabulary change written to the label file and not yet seen in a decision."""

    action: str
    names: tuple[str, ...]
    submitted: float  # monotonic


class Hub:
    """Newest frames, recent decisions and the table in use, for the server's threads to read."""

    def __init__(self, cameras: list[str], options: HttpOptions):
        n = len(cameras)
        self.cameras, self.options = list(cameras), options
        self.closed = threading.Event()
        self._frames: list[tuple[int, np.ndarray] | None] = [None] * n  # (frame number, RGB image)
        self._counts = [0] * n
        self._jpegs: list[tuple[int, bytes] | None] = [None] * n
        self._encode_locks = [threading.Lock() for _ in range(n)]
        self._lock = threading.Lock()
        self._decisions: list[deque[dict[str, Any]]] = [deque(maxlen=options.recent) for _ in range(n)]
        self._seq = 0
        self._table: object | None = None
        self.table_version = 0
        self.table_names: tuple[str, ...] = ()
        self._pending: PendingChange | None = None
        self.changes: deque[dict[str, Any]] = deque(maxlen=20)  # vocabulary changes and their delays
        self.clients = 0  # live-view streams open now
        self.frames_encoded = 0
        self._table_of = None

    def attach(self, table_of) -> None:
        """`table_of()` returns the classifier's table; read on the decision thread, so at `emit`
        it is the table that made the decision."""
        self._table_of = table_of

    # --- frame sink (assembler threads) ---
    needs_every_frame = False  # files read as fast as possible keep skipping unsampled frames

    def frame(self, stream: int, frame: Frame, decision: Decision | None) -> None:
        if frame.image is not None:
            self._counts[stream] += 1
            self._frames[stream] = (self._counts[stream], frame.image)

    # --- decision sink (the decision thread) ---
    def emit(self, decision: Decision) -> None:
        table = self._table_of() if self._table_of is not None else None
        now = time.monotonic()
        with self._lock:
            if table is not None and table is not self._table:
                self._table, self.table_version = table, self.table_version + 1
                self.table_names = tuple(table.names)
            pending = self._pending
            if pending is not None and pending.names == self.table_names:
                self.changes.append({"action": pending.action, "classes": len(pending.names),
                                     "submit_to_decision_s": round(now - pending.submitted, 3)})
                self._pending = None
            self._seq += 1
            record = {**decision.to_json(), "seq": self._seq, "camera": self.camera_name(decision),
                      "labels_version": self.table_version}
            self._decisions[decision.stream].append(record)

    def close(self) -> None:
        self.closed.set()

    def camera_name(self, decision: Decision) -> str:
        return getattr(decision, "camera", None) or self.cameras[decision.stream]

    # --- the server's side ---
    def expect(self, action: str, names: list[str], submitted: float) -> None:
        """Note a vocabulary change just written, to time it until a decision uses the new table."""
        with self._lock:
            self._pending = PendingChange(action, tuple(names), submitted)

    def count_client(self, change: int) -> None:
        with self._lock:
            self.clients += change

    def jpeg(self, stream: int, after: int = 0) -> tuple[int, bytes] | None:
        """The newest frame of `stream` as JPEG when it is newer than frame number `after`."""
        latest = self._frames[stream]
        if latest is None or latest[0] <= after:
            return None
        with self._encode_locks[stream]:  # one encoding per frame, shared by every client
            cached = self._jpegs[stream]
            if cached is not None and cached[0] > after:
                return cached
            number, image = self._frames[stream]  # type: ignore[misc]
            cached = (number, encode_jpeg(image, self.options.stream_width, self.options.jpeg_quality))
            self._jpegs[stream] = cached
            self.frames_encoded += 1
            return cached

    def decisions(self, since: int = 0) -> list[dict[str, Any]]:
        """Every kept decision numbered above `since`, oldest first."""
        with self._lock:
            out = [d for q in self._decisions for d in q if d["seq"] > since]
        return sorted(out, key=lambda d: d["seq"])

    def latest(self) -> list[dict[str, Any] | None]:
        with self._lock:
            return [q[-1] if q else None for q in self._decisions]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"clients": self.clients, "frames_encoded": self.frames_encoded,
                    "labels_version": self.table_version, "vocabulary_changes": list(self.changes),
                    "pending_change": self._pending.action if self._pending else None}
