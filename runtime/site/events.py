"""Action events from each camera's smoothed decisions: start/end with hysteresis.

Per camera and label an event starts after `enter_decisions` decisions >= `enter` and ends after
`exit_decisions` decisions < `exit` (exit <= enter); start and end are the first decision of each
run, peak and mean cover the event, and a shorter dip belongs to it. An event open at stop or camera
removal is closed as `interrupted`. Each event is announced at "start" and at "end"; with event
clips, a third record ("clip") follows once its clip is on disk or has finally failed, so no record
names a file before it exists. Plain single-threaded logic on the decision loop's thread; no cv2,
no torch.

See docs/site.md.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Annotated, Protocol

import numpy as np
from pydantic import Field, model_validator

from ...errors import ConfigError
from ...schema import FilePath, Model, Names
from ..sinks import Decision

log = logging.getLogger(__name__)


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Count = Annotated[int, Field(ge=1)]


class EventOptions(Model):
    """Hysteresis of the segmentation; `labels` limits events to those classes (empty: all)."""

    enter: Probability = 0.5
    exit: Probability = 0.35
    enter_decisions: Count = 2
    exit_decisions: Count = 2
    labels: Annotated[Names, Field(min_length=1)] = ()  # given: at least one class (left out: all)
    file: FilePath | None = None  # --events FILE.jsonl: one JSON object a line, "start" and "end"

    @model_validator(mode="after")
    def _hysteresis(self) -> "EventOptions":
        if self.exit > self.enter:
            raise ValueError(f"exit ({self.exit}) must not be above enter ({self.enter})")
        return self


@dataclass
class ActionEvent:
    """One action on one camera (the agreed interface; see docs/site.md)."""

    id: str  # unique and sortable by time: "<camera>-<UTC YYYYmmddTHHMMSS.mmm>-<label slug>"
    camera: str
    label: str
    phase: str  # "start", "end" (repeats all fields, the end filled in), "clip" (repeats the end, files known)
    start_time: float  # wall clock, Unix seconds
    start_media: float  # seconds into the source
    end_time: float | None
    end_media: float | None
    peak_score: float
    mean_score: float
    peak_time: float
    interrupted: bool = False  # closed because the run stopped (or the camera was removed)
    clip: str | None = None  # event clip file name (relative to the clips folder), on "clip" once written
    snapshot: str | None = None  # peak JPEG file name (relative to the clips folder), on "clip" once written
    error: str | None = None  # on "clip": why the clip (or snapshot) is not there

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("start_time", "start_media", "end_time", "end_media", "peak_time"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        d["peak_score"], d["mean_score"] = round(self.peak_score, 6), round(self.mean_score, 6)
        return d


class EventSink(Protocol):
    def event(self, event: ActionEvent) -> None: ...  # must never block the pipeline

    def close(self) -> None: ...


class FollowUpSource(Protocol):
    """An event sink that has records to add to an event after it ended (the clip writer: "clip")."""

    def follow_ups(self) -> list[ActionEvent]: ...  # taken on the decision loop's thread, never blocks


PLAIN_NAME = re.compile(r"[A-Za-z0-9]+(?:[ _-][A-Za-z0-9]+)*")  # Latin letters and digits, single separators


def slug(text: str) -> str:
    """Lower case, runs of anything but letters and digits as one '-': safe in file names and topics.
    A name that is not plain (PLAIN_NAME: punctuation, another script; `Jump!` and `jump?`, two
    names in Cyrillic) gets a short hash of itself added, so two such names never share a slug;
    plain names differing only in case or separator (`Arm wrestling`, `arm-wrestling`) still do."""
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return base if PLAIN_NAME.fullmatch(text) else f"{base or 'x'}-{short_hash(text)}"


def short_hash(text: str) -> str:
    """Six hex digits of the name's SHA-1: what tells apart names whose safe forms are the same."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:6]


def utc_stamp(t: float) -> str:
    """YYYYmmddTHHMMSS.mmm in UTC: sorts as the time does."""
    ms = int(round(t * 1000))
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}"


def event_file_stem(event: ActionEvent) -> str:
    """The event's clip/snapshot name without suffix: time first, so a folder listing sorts by time."""
    return f"{utc_stamp(event.start_time)}-{slug(event.camera)}-{slug(event.label)}"


@dataclass
class _Track:
    """One label on one camera: the entering run, or the open event and its exiting run."""

    entering: list[Decision] = field(default_factory=list)
    entering_scores: list[float] = field(default_factory=list)
    event: ActionEvent | None = None
    total: float = 0.0
    count: int = 0
    dip: list[tuple[Decision, float]] = field(default_factory=list)


def label_scores(decision: Decision) -> dict[str, float]:
    """The decision's smoothed probability per class: all classes where the decision carries
    them (the pipeline's do), else its top-k (a class not in it counts as 0)."""
    if decision.probs is not None and decision.classes is not None:
        return dict(zip(decision.classes, map(float, decision.probs), strict=False))
    return {name: float(score) for name, score in decision.top}


class EventSegmenter:
    """A decision sink that turns decisions into ActionEvents for the event sinks.

    `options_of(camera)` gives a camera's EventOptions (per-camera thresholds from a site file).
    A sink with `follow_ups()` (FollowUpSource: the clip writer) has its records taken at each
    decision, at `poll()` (the pipeline's idle tick) and at close, and sent to every sink on this
    thread, so no sink is called from the writer's thread.
    """

    def __init__(self, options: EventOptions, sinks: list[EventSink],
                 per_camera: dict[str, EventOptions] | None = None):
        self.options, self.per_camera = options, dict(per_camera or {})
        self.sinks = sinks
        self._tracks: dict[str, dict[str, _Track]] = {}
        self._last: dict[str, Decision] = {}
        self.started = 0
        self.ended = 0
        self.counts: dict[tuple[str, str], int] = {}  # (camera, label) -> events started (metrics), running cameras
        self.removed_started = 0  # events started on cameras a reload removed (their counts folded here)

    def options_of(self, camera: str) -> EventOptions:
        return self.per_camera.get(camera, self.options)

    def emit(self, decision: Decision) -> None:
        self.poll()
        o = self.options_of(decision.camera)
        tracks = self._tracks.setdefault(decision.camera, {})
        self._last[decision.camera] = decision
        scores = label_scores(decision)
        if o.labels:
            scores = {k: v for k, v in scores.items() if k in o.labels}
        low = min(o.enter, o.exit)
        candidates = {k for k, v in scores.items() if v >= low} | set(tracks)
        for label in sorted(candidates):
            p = scores.get(label, 0.0)  # a class gone from a swapped table scores 0
            track = tracks.setdefault(label, _Track())
            if track.event is None:
                self._entering(decision, label, p, track, o)
            else:
                self._open(decision, p, track, o)
            if track.event is None and not track.entering:
                del tracks[label]

    def _entering(self, d: Decision, label: str, p: float, track: _Track, o: EventOptions) -> None:
        if p < o.enter:
            track.entering.clear()
            track.entering_scores.clear()
            return
        track.entering.append(d)
        track.entering_scores.append(p)
        if len(track.entering) < o.enter_decisions:
            return
        first = track.entering[0]
        scores = track.entering_scores
        peak = int(np.argmax(scores))
        event = ActionEvent(id=f"{d.camera}-{utc_stamp(first.time)}-{slug(label)}", camera=d.camera, label=label,
                            phase="start", start_time=first.time, start_media=first.media_time, end_time=None,
                            end_media=None, peak_score=scores[peak], mean_score=sum(scores) / len(scores),
                            peak_time=track.entering[peak].time)
        track.event, track.total, track.count = event, sum(scores), len(scores)
        track.entering, track.entering_scores = [], []
        self.started += 1
        self.counts[(d.camera, label)] = self.counts.get((d.camera, label), 0) + 1
        self._send(replace(event))
        self._peak(event)

    def _open(self, d: Decision, p: float, track: _Track, o: EventOptions) -> None:
        event = track.event
        assert event is not None
        if p < o.exit:
            track.dip.append((d, p))
            if len(track.dip) >= o.exit_decisions:
                self._close(track, track.dip[0][0], interrupted=False)
            return
        for dd, pp in track.dip:  # a dip too short to end the event belongs to it
            self._add(track, dd, pp)
        track.dip.clear()
        self._add(track, d, p)

    def _add(self, track: _Track, d: Decision, p: float) -> None:
        event = track.event
        assert event is not None
        track.total += p
        track.count += 1
        event.mean_score = track.total / track.count
        if p > event.peak_score:
            event.peak_score, event.peak_time = p, d.time
            self._peak(event)

    def _close(self, track: _Track, end: Decision, interrupted: bool) -> None:
        event = track.event
        assert event is not None
        event.phase, event.end_time, event.end_media, event.interrupted = "end", end.time, end.media_time, interrupted
        track.event, track.dip, track.total, track.count = None, [], 0.0, 0
        self.ended += 1
        self._send(event)

    def _send(self, event: ActionEvent) -> None:
        for sink in self.sinks:
            sink.event(event)

    def poll(self) -> None:
        """Send the follow-up records the sinks have ready (a clip written or failed after its end)."""
        for source in self.sinks:
            take = getattr(source, "follow_ups", None)
            if take is not None:
                for record in take():
                    self._send(record)

    def _peak(self, event: ActionEvent) -> None:
        """Sinks that keep a picture of the peak (event clips) hear of each new one."""
        for sink in self.sinks:
            peak = getattr(sink, "peak", None)
            if peak is not None:
                peak(event)

    def open_events(self) -> list[ActionEvent]:
        return [t.event for tracks in self._tracks.values() for t in tracks.values() if t.event is not None]

    def close_camera(self, camera: str) -> None:
        """Close the camera's open events as interrupted (the camera is removed, or the run stops)."""
        tracks = self._tracks.pop(camera, {})
        last = self._last.pop(camera, None)
        for track in tracks.values():
            if track.event is not None and last is not None:
                self._close(track, track.dip[0][0] if track.dip else last, interrupted=True)

    def camera_removed(self, camera: str) -> None:
        """A reload removed the camera: its events are closed and its per-label counts folded into
        `removed_started`, so reloads adding cameras for days do not grow `counts`
        (started == sum(counts) + removed_started)."""
        self.close_camera(camera)
        for key in [k for k in self.counts if k[0] == camera]:
            self.removed_started += self.counts.pop(key)

    def close(self) -> None:
        for camera in list(self._tracks):
            self.close_camera(camera)
        sources = [s for s in self.sinks if hasattr(s, "follow_ups")]
        for sink in sources:  # the clip writer finishes first: its last records reach the other sinks
            sink.close()
        self.poll()
        for sink in self.sinks:
            if sink not in sources:
                sink.close()


def check_events_file(path: Path) -> None:
    """The events file's folder must exist (a typo in it is said at start, not made a new tree)."""
    if not path.parent.is_dir():
        raise ConfigError(f"--events {path}: folder {path.parent} does not exist")


class JsonlEventSink:
    """Events appended to a file, one JSON object a line, written at once (a small append: it never
    holds the decision loop up). Runs add to the file.

    A failed write (a full disk, a file-size limit, a file made read-only) never stops the run: the
    first failure is logged, every lost event is counted (`lost`), and the file is cut back to its
    size before the write, so the next line that can be written starts on a whole line (where even
    the cut fails, the next write ends the cut-off line first). `reopen()` (SIGHUP, after the file was
    rotated away) makes the next write open the path again.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        check_events_file(self.path)
        self.lost = 0
        self._fd: int | None = self._open()
        self._reopen = False
        self._cut = False  # the file may end in a cut-off line
        self._failing = False

    def _open(self) -> int:
        return os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)

    def reopen(self) -> None:
        """Open the path again before the next write (safe from any thread: only a flag is set)."""
        self._reopen = True

    def event(self, event: ActionEvent) -> None:
        data = (json.dumps(event.to_json()) + "\n").encode()
        try:
            self._write(data)
        except OSError as e:
            self.lost += 1
            if not self._failing:
                self._failing = True
                log.warning("events file %s: %s; events are counted as lost until writes succeed again",
                            self.path, e.strerror or e)
            return
        if self._failing:
            self._failing = False
            log.warning("events file %s: writing again (%d events lost so far)", self.path, self.lost)

    def _write(self, data: bytes) -> None:
        if self._reopen or self._fd is None:
            self._reopen = False
            self._close_fd()
            self._fd = self._open()
            self._cut = False
        fd = self._fd
        size = os.fstat(fd).st_size
        if self._cut and size > 0 and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data  # the cut-off line ends here, alone; this one starts whole
        try:
            done = os.write(fd, data)
            if done != len(data):  # the rest would fail with the reason (EFBIG, ENOSPC)
                os.write(fd, data[done:])
                raise OSError(errno.ENOSPC, "short write")
        except OSError:
            try:
                os.ftruncate(fd, size)
            except OSError:
                self._cut = True
            raise
        self._cut = False

    def _close_fd(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def close(self) -> None:
        self._close_fd()
