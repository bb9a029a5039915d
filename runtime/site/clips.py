"""Event clips: an mp4 per action event with a pre-roll, a JPEG at its peak, within a disk budget.

Each camera keeps recent frames in memory (downscaled, rate-limited, bounded by `buffer_mb`). An
event's frames from `pre_roll_s` before its start to `post_roll_s` after its end (at most
`max_clip_s`) go through a bounded queue to one writer thread, so the pipeline never waits for the
disk (a full queue drops and counts). Clips and snapshots are written atomically; names start with
the event's UTC start, so a listing sorts by time. Once a recording is closed and its files are
final (renamed into place whole, or failed: a full disk, a size limit), its event gets a "clip"
record naming only what is on disk (`follow_ups`, sent by the segmenter). Beyond `budget_mb` the oldest of the files this sink wrote (named so
and listed in the folder's record `.froster-edge-clips.json`) go first; no other file is deleted.

See docs/site.md and docs/robustness.md.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import queue
import re
import threading
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Callable

import numpy as np
from pydantic import Field

from ...errors import ConfigError
from ...io import atomic_path, atomic_write_bytes, atomic_write_json, read_versioned_json, recover
from ...schema import FilePath, Model
from ..assembly import RateGate
from ..sources import Frame, cv2
from .events import ActionEvent, event_file_stem

log = logging.getLogger(__name__)

BUFFER_MARGIN_S = 20.0  # kept beyond the pre-roll: an event is announced after its entering run


Seconds = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]


class ClipOptions(Model):
    folder: FilePath
    pre_roll_s: Seconds = 5.0
    post_roll_s: Seconds = 2.0
    max_clip_s: Positive = 120.0
    budget_mb: Positive = 2048.0  # this sink's clips and snapshots (DiskBudget); oldest deleted first beyond it
    buffer_mb: Positive = 48.0  # recent frames kept in memory, per camera
    width: Annotated[int, Field(ge=16)] = 640  # frames wider than this are downscaled (aspect kept)
    fps: Positive = 10.0  # at most this many frames a second in clips and the buffer
    queue: Annotated[int, Field(ge=1)] = 256  # frames waiting for the writer; beyond, frames are dropped (counted)


def check_clips_folder(options: ClipOptions) -> Path:
    """The clips folder must exist: it is the user's, made and chosen on purpose."""
    folder = Path(options.folder)
    if not folder.is_dir():
        raise ConfigError(f"clips folder {folder} does not exist")
    return folder


def playable(path: Path | None) -> bool:
    """The file opens as a video and its first frame decodes."""
    if path is None or not path.is_file() or path.stat().st_size == 0:
        return False
    cap = cv2.VideoCapture(str(path))
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


def downscale(image: np.ndarray, width: int) -> np.ndarray:
    """At most `width` wide, even sides (mp4 encoders want them), aspect kept."""
    h, w = image.shape[:2]
    if w <= width and w % 2 == 0 and h % 2 == 0:
        return image
    scale = min(1.0, width / w)
    nw, nh = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)


class FrameBuffer:
    """One camera's recent (wall time, frame) pairs, bounded by seconds and bytes."""

    def __init__(self, seconds: float, max_bytes: int):
        self.seconds, self.max_bytes = seconds, max_bytes
        self.items: deque[tuple[float, np.ndarray]] = deque()
        self.bytes = 0

    def add(self, wall: float, image: np.ndarray) -> None:
        self.items.append((wall, image))
        self.bytes += image.nbytes
        while self.items and (self.bytes > self.max_bytes or wall - self.items[0][0] > self.seconds):
            self.bytes -= self.items.popleft()[1].nbytes

    def since(self, t: float) -> list[np.ndarray]:
        return [image for wall, image in self.items if wall >= t]

    def nearest(self, t: float) -> np.ndarray | None:
        if not self.items:
            return None
        return min(self.items, key=lambda item: abs(item[0] - t))[1]


RECORD_FILE = ".froster-edge-clips.json"  # the clips this sink wrote, in the clips folder
RECORD_FORMAT, RECORD_VERSION = "froster-edge-clips", 1
OWN_NAME = re.compile(r"^\d{8}T\d{6}\.\d{3}-[a-z0-9-]+\.(?:mp4|jpg)$")  # event_file_stem + suffix


class DiskBudget:
    """The clips and snapshots this sink wrote, oldest first beyond the budget.

    Only a file both named as ours (OWN_NAME) and listed in the folder's record (RECORD_FILE, kept
    by every run and written atomically) is counted or ever deleted: a user's video in the folder,
    even one named like ours, is never touched and does not count against the budget. A record
    that cannot be read is said once and started afresh (nothing of the folder is then trimmed
    until this run writes its own)."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder, self.max_bytes = folder, max_bytes
        self.record = folder / RECORD_FILE
        self.files: list[tuple[str, int]] = sorted(
            (name, (folder / name).stat().st_size) for name in self._recorded()
            if OWN_NAME.match(name) and (folder / name).is_file() and not (folder / name).is_symlink())
        self.total = sum(size for _, size in self.files)
        self.deleted = 0
        self.trim()

    def _recorded(self) -> set[str]:
        if not self.record.exists():
            return set()
        try:
            doc = read_versioned_json(self.record, RECORD_FORMAT, RECORD_VERSION, ("files",), ConfigError, "clips record")
            names = doc["files"]
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ConfigError(f"{self.record} is corrupt: 'files' is not a list of names")
        except ConfigError as e:
            log.warning("clips: %s; starting a new record (files it named are no longer trimmed)", e)
            return set()
        return set(names)

    def _save(self) -> None:
        atomic_write_json(self.record, {"format": RECORD_FORMAT, "version": RECORD_VERSION,
                                        "files": [name for name, _ in self.files]})

    def add(self, path: Path) -> None:
        size = path.stat().st_size
        bisect.insort(self.files, (path.name, size))
        self.total += size
        self.trim(save=True)

    def trim(self, save: bool = False) -> None:
        while self.files and self.total > self.max_bytes:
            name, size = self.files.pop(0)
            (self.folder / name).unlink(missing_ok=True)
            self.total -= size
            self.deleted += 1
            save = True
        if save:
            self._save()


@dataclass
class _Recording:
    stem: str
    camera: str
    limit: float  # wall time after which no frame is added (max_clip_s)
    stop_at: float | None = None  # end + post-roll, once the event ended
    snapshot: np.ndarray | None = None


@dataclass
class _Outcome:
    """A recording's files once final: the names on disk (None: not there) and why not."""

    clip: str | None
    snapshot: str | None
    error: str | None


def describe(error: Exception) -> str:
    """A failure as one short phrase for a "clip" record (an OS error's reason, not its path)."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


@dataclass
class ClipCounters:
    clips: int = 0
    snapshots: int = 0
    dropped_frames: int = 0  # found the writer's queue full
    dropped_clips: int = 0
    errors: int = 0
    bytes_on_disk: int = 0
    deleted: int = 0
    open: int = 0


@dataclass
class _Open:
    path: Path
    fps: float
    stack: contextlib.ExitStack | None = None  # the atomic write, once the first frame came
    writer: cv2.VideoWriter | None = None
    size: tuple[int, int] = (0, 0)
    tmp: Path | None = None  # the temporary file being written, renamed to `path` once verified


class EventClips:
    """An event sink and a frame sink: buffers frames per camera, records events, writes files."""

    def __init__(self, options: ClipOptions, camera_of: Callable[[int], str], fps_of: Callable[[int], float]):
        folder = check_clips_folder(options)
        self.options, self.camera_of, self.fps_of = options, camera_of, fps_of
        self.counters = ClipCounters()
        recover(folder)  # hidden temporaries a killed run left (ours only: by name, of processes that are gone)
        self.budget = DiskBudget(folder, int(options.budget_mb * 2**20))
        self._lock = threading.Lock()
        self._buffers: dict[str, FrameBuffer] = {}
        self._gates: dict[int, RateGate] = {}
        self._cam_fps: dict[str, float] = {}
        self._recordings: dict[str, _Recording] = {}  # event id -> recording
        self._queue: queue.Queue = queue.Queue(options.queue)
        self._open: dict[str, _Open] = {}
        self._logged: set[str] = set()
        self._errors: dict[str, str] = {}  # stem -> the first failure writing it (the writer's)
        self._written: dict[str, set[str]] = {}  # stem -> suffixes renamed into place (the writer's)
        self._ends: dict[str, ActionEvent] = {}  # event id -> its "end", until its "clip" record goes
        self._closing: set[str] = set()  # event ids whose close is queued for the writer
        self._done: dict[str, _Outcome] = {}  # event id -> its files, final (the clip may end before the event)
        self._writer = threading.Thread(target=self._write_loop, name="clip-writer", daemon=True)
        self._writer.start()

    # --- producers: frame threads and the decision loop (never wait) ---

    def _put(self, item: tuple, clip: bool = False) -> bool:
        try:
            self._queue.put_nowait(item)
            return True
        except queue.Full:
            if clip:
                self.counters.dropped_clips += 1
            else:
                self.counters.dropped_frames += 1
            return False

    needs_every_frame = False  # the reader hands on `frame_fps` frames a second (and the sampled ones)

    @property
    def frame_fps(self) -> float:
        return self.options.fps

    def frame(self, stream: int, frame: Frame, decision) -> None:
        if frame.image is None:
            return
        gate = self._gates.get(stream)
        if gate is None:
            gate = self._gates[stream] = RateGate(self._fps(stream))
        if not gate.take(frame.wall):
            return
        camera = self.camera_of(stream)
        small = downscale(frame.image, self.options.width)
        with self._lock:
            self._cam_fps[camera] = 1.0 / gate.period
            buf = self._buffers.get(camera)
            if buf is None:
                buf = self._buffers[camera] = FrameBuffer(self.options.pre_roll_s + BUFFER_MARGIN_S,
                                                          int(self.options.buffer_mb * 2**20))
            buf.add(frame.wall, small)
            for key, rec in list(self._recordings.items()):
                if rec.camera != camera:
                    continue
                if frame.wall > rec.limit or (rec.stop_at is not None and frame.wall > rec.stop_at):
                    self._finish(key)
                else:
                    self._put(("frame", rec.stem, small))

    def _fps(self, stream: int) -> float:
        source = self.fps_of(stream)
        return min(self.options.fps, source) if source and source > 0 else self.options.fps

    def event(self, event: ActionEvent) -> None:
        with self._lock:
            if event.phase == "start":
                buf = self._buffers.get(event.camera)
                frames = buf.since(event.start_time - self.options.pre_roll_s) if buf else []
                stem = event_file_stem(event)
                fps = self._cam_fps.get(event.camera, self.options.fps)
                rec = _Recording(stem, event.camera, event.start_time + self.options.max_clip_s)
                rec.snapshot = buf.nearest(event.peak_time) if buf else None
                if self._put(("open", stem, fps, frames), clip=True):
                    self._recordings[event.id] = rec
            elif event.phase == "end":
                self._ends[event.id] = event
                if event.id in self._recordings:
                    rec = self._recordings[event.id]
                    rec.stop_at = (event.end_time or 0.0) + self.options.post_roll_s
                    if event.interrupted:
                        self._finish(event.id)
                elif event.id not in self._done and event.id not in self._closing:  # its start found the queue full
                    self._done[event.id] = _Outcome(None, None, "not recorded: the clip writer's queue was full")

    def follow_ups(self) -> list[ActionEvent]:
        """The "clip" record of each ended event whose files are final: `clip`/`snapshot` name what
        is on disk (renamed into place whole), None what is not, `error` says why (FollowUpSource)."""
        with self._lock:
            ready = [i for i in self._done if i in self._ends]
            out = []
            for event_id in ready:
                done, end = self._done.pop(event_id), self._ends.pop(event_id)
                out.append(replace(end, phase="clip", clip=done.clip, snapshot=done.snapshot, error=done.error))
            return out

    def peak(self, event: ActionEvent) -> None:
        with self._lock:
            rec, buf = self._recordings.get(event.id), self._buffers.get(event.camera)
            if rec is not None and buf is not None:
                rec.snapshot = buf.nearest(event.peak_time)

    def camera_removed(self, camera: str) -> None:
        with self._lock:
            for key, rec in list(self._recordings.items()):
                if rec.camera == camera:
                    self._finish(key)
            self._buffers.pop(camera, None)

    def _finish(self, key: str) -> None:
        """Under the lock: no more frames for this recording; the writer closes it."""
        rec = self._recordings.pop(key)
        try:
            self._queue.put(("close", rec.stem, rec.snapshot, key), timeout=1.0)  # a close is never dropped
            self._closing.add(key)
        except queue.Full:
            self.counters.dropped_clips += 1
            self._done[key] = _Outcome(None, None, "not finished: the clip writer's queue was full")

    def close(self) -> None:
        if not self._writer.is_alive():
            return
        with self._lock:
            for key in list(self._recordings):
                self._finish(key)
        self._queue.put(None)
        self._writer.join(timeout=60.0)
        with self._lock:  # a clip still open when the writer stopped is not on disk
            for key in list(self._closing):
                self._closing.discard(key)
                self._done[key] = _Outcome(None, None, "not finished: the clip writer did not end in time")

    # --- the writer thread ---

    def _write_loop(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            kind, stem = item[0], item[1]
            try:
                if kind == "open":
                    self._start_clip(stem, item[2], item[3])
                elif kind == "frame":
                    self._write(stem, item[2])
                else:
                    self._end_clip(stem, item[2])
            except Exception as e:  # a full disk or a codec: count it, say it once per kind, go on
                self.counters.errors += 1
                self._errors.setdefault(stem, describe(e))
                opened = self._open.pop(stem, None)
                if opened is not None and opened.stack is not None:
                    opened.stack.__exit__(type(e), e, e.__traceback__)
                if kind not in self._logged:
                    self._logged.add(kind)
                    log.info(f"clips: {stem}: {type(e).__name__}: {e}")
            if kind == "close":  # final: what is on disk now is all this event will have
                self._report(item[3], stem)
            self.counters.open = len(self._open)
        for opened in self._open.values():  # its close found the queue full: never renamed into place
            if opened.writer is not None and opened.stack is not None:
                opened.writer.release()
                error = OSError(f"{opened.path.name} was not finished")
                opened.stack.__exit__(OSError, error, None)
        self._open.clear()

    def _report(self, key: str, stem: str) -> None:
        """The outcome of a closed recording, for its "clip" record."""
        written = self._written.pop(stem, set())
        outcome = _Outcome(f"{stem}.mp4" if ".mp4" in written else None, f"{stem}.jpg" if ".jpg" in written else None,
                           self._errors.pop(stem, None))
        if outcome.clip is None and outcome.error is None:
            outcome.error = "no frames to write"
        with self._lock:
            self._closing.discard(key)
            self._done[key] = outcome

    def _start_clip(self, stem: str, fps: float, frames: list[np.ndarray]) -> None:
        self._open[stem] = _Open(Path(self.options.folder) / f"{stem}.mp4", fps)
        for image in frames:
            self._write(stem, image)

    def _write(self, stem: str, image: np.ndarray) -> None:
        opened = self._open.get(stem)
        if opened is None:  # its start was dropped
            return
        if opened.writer is None:  # the first frame sets the size
            opened.stack = contextlib.ExitStack()
            tmp = opened.tmp = opened.stack.enter_context(atomic_path(opened.path, keep_suffix=True))
            opened.size = (image.shape[1], image.shape[0])
            opened.writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), opened.fps, opened.size)
            if not opened.writer.isOpened():
                raise OSError(f"OpenCV cannot write {opened.path} here (no mp4v encoder)")
        if (image.shape[1], image.shape[0]) != opened.size:  # the source changed resolution
            image = cv2.resize(image, opened.size, interpolation=cv2.INTER_AREA)
        opened.writer.write(cv2.cvtColor(image, cv2.COLOR_RGB2BGR))

    def _end_clip(self, stem: str, snapshot: np.ndarray | None) -> None:
        opened = self._open.pop(stem, None)
        if opened is not None and opened.writer is not None and opened.stack is not None:
            opened.writer.release()
            if not playable(opened.tmp):  # OpenCV's writer never raises: a full disk leaves a torn file
                error = OSError(f"{opened.path.name} could not be written whole (a full disk or a size limit?)")
                opened.stack.__exit__(OSError, error, None)  # the temporary is deleted, nothing renamed
                raise error
            opened.stack.close()  # the rename: the clip appears whole
            self._written.setdefault(stem, set()).add(".mp4")
            self.counters.clips += 1
            self.budget.add(opened.path)
        if snapshot is not None:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(snapshot, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
            if ok:
                path = Path(self.options.folder) / f"{stem}.jpg"
                atomic_write_bytes(path, jpeg.tobytes())
                self._written.setdefault(stem, set()).add(".jpg")
                self.counters.snapshots += 1
                self.budget.add(path)
        self.counters.bytes_on_disk, self.counters.deleted = self.budget.total, self.budget.deleted
