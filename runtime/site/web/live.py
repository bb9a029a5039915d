"""What the web view shows, collected from the running pipeline without ever making it wait.

A frame and decision sink: a frame costs the pipeline one reference assignment; JPEG encoding runs
on the server's threads only while a client watches, at most `stream_fps` a second per stream,
shared by all its clients. Decisions are kept per camera (the newest `recent`), numbered, with the
label table version that made them, so the page can tell when a vocabulary change has arrived.

See docs/web.md.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

import numpy as np

from ...sinks import Decision
from ...sources import Frame, cv2
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
        self.cameras: list[str] = []
        self.options = options
        self.closed = threading.Event()
        self._frames: list[tuple[int, np.ndarray] | None] = []  # per stream: (frame number, RGB image)
        self._counts: list[int] = []
        self._jpegs: list[tuple[int, bytes] | None] = []
        self._encode_locks: list[threading.Lock] = []
        self._lock = threading.Lock()
        self._decisions: list[deque[dict[str, Any]]] = []
        self._seq = 0
        self._tables: list[object | None] = []
        self.table_versions: list[int] = []  # per camera: bumped each time its decisions come from a new table
        self.table_names: list[tuple[str, ...]] = []
        for i, name in enumerate(cameras):
            self._ensure(i, name)
        self._pending: PendingChange | None = None
        self.changes: deque[dict[str, Any]] = deque(maxlen=20)  # vocabulary changes and their delays
        self.clients = 0  # live-view streams open now
        self.frames_encoded = 0
        self.cpu_s = 0.0  # CPU time the server's threads spent (requests, encoding): the web view's cost
        self._table_of = None
        self.events_enabled = False  # set when the run records action events (runtime/site/events.py)
        self.clips_dir: Path | None = None  # where the event sink writes snapshots (the server's setting)
        self._events: dict[str, deque[dict[str, Any]]] = {}
        self._snapshots: dict[str, str] = {}  # event id -> snapshot file name, for the newest events
        self.removed: set[int] = set()  # streams whose camera a reload removed (numbers are never reused)
        self.archive: Path | None = None  # the run's archive (runtime/site/archive.py), searched by the page
        self._down: dict[str, str] = {}  # camera name -> why its stream is down (absent: up)

    def _ensure(self, stream: int, name: str | None = None) -> None:
        """Room for stream `stream` (a camera added while the run goes on gets the next number)."""
        if stream < len(self.cameras):
            return
        with self._lock:
            while len(self.cameras) <= stream:
                i = len(self.cameras)
                self.cameras.append(name if i == stream and name else f"stream {i}")
                self._frames.append(None)
                self._counts.append(0)
                self._jpegs.append(None)
                self._encode_locks.append(threading.Lock())
                self._decisions.append(deque(maxlen=self.options.recent))
                self._tables.append(None)
                self.table_versions.append(0)
                self.table_names.append(())

    def camera_removed(self, name: str) -> None:
        """A reload removed the camera: its stream leaves the API and its frames and decisions go."""
        with self._lock:
            for i, camera in enumerate(self.cameras):
                if camera == name and i not in self.removed:
                    self.removed.add(i)
                    self._frames[i] = self._jpegs[i] = self._tables[i] = None
                    self._decisions[i].clear()

    def live_streams(self) -> list[int]:
        """The stream numbers of the cameras running now."""
        return [i for i in range(len(self.cameras)) if i not in self.removed]

    def attach(self, table_of: Callable[[int], object]) -> None:
        """`table_of(stream)` returns the table that stream's classifier uses; read on the decision
        thread, so at `emit` it is the table that made the decision."""
        self._table_of = table_of

    # --- frame sink (assembler threads) ---
    needs_every_frame = False  # files read as fast as possible keep skipping unsampled frames

    def frame(self, stream: int, frame: Frame, decision: Decision | None) -> None:
        if frame.image is not None and stream not in self.removed:
            self._ensure(stream)
            self._counts[stream] += 1
            self._frames[stream] = (self._counts[stream], frame.image)

    # --- decision sink (the decision thread) ---
    def emit(self, decision: Decision) -> None:
        i = decision.stream
        if i in self.removed:
            return
        camera = getattr(decision, "camera", None)
        self._ensure(i, camera)
        if camera and self.cameras[i] != camera:  # a camera added by a reload whose frames came first
            self.cameras[i] = camera
        table = self._table_of(i) if self._table_of is not None else None
        now = time.monotonic()
        with self._lock:
            if table is not None and table is not self._tables[i]:
                self._tables[i], self.table_versions[i] = table, self.table_versions[i] + 1
                self.table_names[i] = tuple(table.names)  # type: ignore[attr-defined]
            pending = self._pending
            if pending is not None and pending.names == self.table_names[i]:
                self.changes.append({"action": pending.action, "classes": len(pending.names),
                                     "submit_to_decision_s": round(now - pending.submitted, 3)})
                self._pending = None
            self._seq += 1
            self.cameras[i] = self.camera_name(decision)
            record = {**decision.to_json(), "seq": self._seq, "camera": self.cameras[i],
                      "labels_version": self.table_versions[i]}
            self._decisions[i].append(record)

    # --- event sink (the decision thread) ---
    def event(self, event) -> None:
        """An ActionEvent ("start", then "end" with the same id): the end replaces the start; its
        "clip" record fills in the kept end's `clip`, `snapshot` and `error`."""
        record = event.to_json()
        with self._lock:
            kept = self._events.setdefault(event.camera, deque(maxlen=self.options.recent))
            if event.phase == "clip":
                for old in kept:
                    if old["id"] == event.id:
                        old.update(clip=record["clip"], snapshot=record["snapshot"], error=record["error"])
                        if event.snapshot:
                            self._snapshots[event.id] = event.snapshot
                return
            for i, old in enumerate(kept):
                if old["id"] == event.id:
                    del kept[i]
                    break
            kept.append(record)
            if event.snapshot:
                self._snapshots[event.id] = event.snapshot
            alive = {e["id"] for q in self._events.values() for e in q}
            self._snapshots = {k: v for k, v in self._snapshots.items() if k in alive}

    def events(self) -> dict[str, list[dict[str, Any]]]:
        """The kept events per camera, each with `snapshot_url`: where its snapshot is served once
        the clip writer has written it (None before that, or without one)."""
        with self._lock:
            kept = {camera: list(q) for camera, q in self._events.items()}
        def url(event_id: str) -> str | None:
            return f"/api/events/{quote(event_id, safe='')}.jpg" if self.snapshot_path(event_id) else None

        return {camera: [{**e, "snapshot_url": url(e["id"])} for e in q] for camera, q in kept.items()}

    def snapshot_path(self, event_id: str) -> Path | None:
        """The snapshot of a kept event: a file name the event sink wrote, in the server's clips
        folder (never a path from the client; a name with a folder part is not served)."""
        with self._lock:
            name = self._snapshots.get(event_id)
        if name is None or self.clips_dir is None or Path(name).name != name:
            return None
        path = self.clips_dir / name
        return path if path.is_file() else None

    def archived_thumb(self, decision: int) -> bytes | None:
        """The thumbnail kept with an archived decision."""
        from ..search import connect, thumbnail

        if self.archive is None:
            return None
        conn = connect(self.archive, readonly=True)
        try:
            return thumbnail(conn, decision)
        finally:
            conn.close()

    def archived_clip(self, decision: int) -> Path | None:
        """The event clip an archived decision belongs to: a file the run wrote into its clips folder
        (a recorded path anywhere else is not served), once it is on disk."""
        from ..search import connect

        if self.archive is None or self.clips_dir is None:
            return None
        conn = connect(self.archive, readonly=True)
        try:
            row = conn.execute("SELECT clip FROM decisions WHERE id = ?", (int(decision),)).fetchone()
        finally:
            conn.close()
        if row is None or not row[0]:
            return None
        path = Path(row[0])
        if path.parent.resolve() != Path(self.clips_dir).resolve() or not path.is_file():
            return None
        return path

    def close(self) -> None:
        self.closed.set()

    def camera_name(self, decision: Decision) -> str:
        return getattr(decision, "camera", None) or self.cameras[decision.stream]

    # --- the server's side ---
    def expect(self, action: str, names: list[str], submitted: float) -> None:
        """Note a vocabulary change just written, to time it until a decision uses the new table."""
        with self._lock:
            self._pending = PendingChange(action, tuple(names), submitted)

    def add_cpu(self, seconds: float) -> None:
        with self._lock:
            self.cpu_s += seconds

    def count_client(self, change: int) -> None:
        with self._lock:
            self.clients += change

    def jpeg(self, stream: int, after: int = 0) -> tuple[int, bytes] | None:
        """The newest frame of `stream` as JPEG when it is newer than frame number `after`."""
        latest = self._frames[stream] if stream < len(self._frames) else None
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

    def camera_state(self, camera: str, up: bool, why: str = "") -> None:
        """A reader's thread: the camera's stream went down (why) or came back."""
        with self._lock:
            if up:
                self._down.pop(camera, None)
            else:
                self._down[camera] = why or "no frames"

    def down_reason(self, camera: str) -> str | None:
        """Why the camera is down, or None while it is up."""
        with self._lock:
            return self._down.get(camera)

    def latest(self) -> list[dict[str, Any] | None]:
        with self._lock:
            return [q[-1] if q else None for q in self._decisions]

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {"clients": self.clients, "frames_encoded": self.frames_encoded, "cpu_s": round(self.cpu_s, 3),
                    "labels_versions": list(self.table_versions), "vocabulary_changes": list(self.changes),
                    "pending_change": self._pending.action if self._pending else None}
