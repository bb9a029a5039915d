"""Where decisions go: JSON lines or readable lines on stdout, an overlay window, an annotated video.

Decision sinks get every decision on the main loop's thread. Frame sinks (`--record`, `--show`) get
every frame an assembler takes, with that stream's latest decision, on the assembler's thread; a
slow frame sink makes a live reader drop frames (counted), never queue them.

See docs/runtime.md.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Protocol

import numpy as np

from ..errors import ConfigError, FrosterError, MissingCapability
from ..io import Output
from .sources import Frame, cv2


@dataclass
class Decision:
    """One classified clip of one stream."""

    stream: int
    source: str
    frame: int  # index of the clip's newest frame in its source
    media_time: float  # seconds into the video (files) or since the stream started (live)
    time: float  # wall-clock capture time of the newest frame (Unix seconds)
    label: str  # top-1, or the unknown label under --threshold
    score: float
    top: list[tuple[str, float]]
    latency_ms: dict[str, float]
    short: bool = False  # the one decision of a file shorter than a clip (frames by the short-video rule)
    camera: str = ""  # the camera's name (a site file's, else the source string)
    # every class's smoothed probability (for event segmentation; not in the JSON line)
    classes: list[str] | None = field(default=None, repr=False, compare=False)
    probs: np.ndarray | None = field(default=None, repr=False, compare=False)
    # the clip's video embedding as the classifier scored it (the archive keeps it; not in the JSON line)
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.camera = self.camera or self.source

    def to_json(self) -> dict:
        return {"stream": self.stream, "camera": self.camera, "source": self.source, "frame": self.frame,
                "media_time": round(self.media_time, 3), "time": round(self.time, 3), "label": self.label,
                "score": round(self.score, 6), "top": [{"label": n, "score": round(s, 6)} for n, s in self.top],
                "latency_ms": {k: round(v, 3) for k, v in self.latency_ms.items()}, "short": self.short}


class DecisionSink(Protocol):
    def emit(self, decision: Decision) -> None: ...

    def close(self) -> None: ...


class FrameSink(Protocol):
    def frame(self, stream: int, frame: Frame, decision: Decision | None) -> None: ...

    def close(self) -> None: ...


class JsonlSink:
    """One JSON object a line, flushed at once, so a pipe sees each decision when it is made."""

    def __init__(self, out: IO[str] | None = None):
        self.out = out or sys.stdout

    def emit(self, decision: Decision) -> None:
        self.out.write(json.dumps(decision.to_json()) + "\n")
        self.out.flush()

    def close(self) -> None:
        pass


class TextSink:
    """The top actions over time, one readable line a decision."""

    def __init__(self, streams: int, out: IO[str] | None = None):
        self.out = out or sys.stdout
        self.prefix = streams > 1

    def emit(self, d: Decision) -> None:
        head = f"[{d.stream}] " if self.prefix else ""
        others = "  ".join(f"{n} {s:.0%}" for n, s in d.top[1:])
        note = "   (short file: one clip over all of it)" if d.short else ""
        self.out.write(f"{head}{d.media_time:7.2f}s  {d.label:24s} {d.score:5.1%}   {others}{note}\n")
        self.out.flush()

    def close(self) -> None:
        pass


def annotate(image: np.ndarray, decision: Decision | None) -> np.ndarray:
    """A BGR copy of an RGB frame with the decision's top-k written on a dark band at the top."""
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if decision is None:
        return bgr
    scale = max(0.4, bgr.shape[0] / 600)
    lines = [f"{decision.label}  {decision.score:.0%}"] + [f"  {n} {s:.0%}" for n, s in decision.top[1:]]
    step = int(26 * scale)
    cv2.rectangle(bgr, (0, 0), (bgr.shape[1], step * len(lines) + 8), (0, 0, 0), -1)
    for i, text in enumerate(lines):
        cv2.putText(bgr, text, (6, step * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.7 * scale, (255, 255, 255),
                    1 if i else 2, cv2.LINE_AA)
    return bgr


class RecordSink:
    """Annotated video files, one per stream (FILE, or FILE_<i> with several), written to a
    temporary name beside the target and renamed over it when the run ends. Its `outputs` are
    checked at start with the run's other destinations; `close` finishes every file even while
    an assembler is still handing it a frame (one lock), so a stopped run leaves playable files."""

    FOURCC = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}

    def __init__(self, path: Path, streams: int, fps_of: Callable[[int], float]):
        path = Path(path)
        if path.suffix.lower() not in self.FOURCC:
            raise ConfigError(f"--record {path}: use a .mp4, .avi or .mkv file name")
        n = streams
        self.targets = [path if n == 1 else path.with_name(f"{path.stem}_{i}{path.suffix}") for i in range(n)]
        self.outputs = [Output(t, "--record") for t in self.targets]
        self.fps_of = fps_of  # a stream's frame rate is known once its source is open
        self.writers: list[cv2.VideoWriter | None] = [None] * n
        self.temps = [t.with_name(f".{t.stem}.{os.getpid()}.partial{t.suffix}") for t in self.targets]
        self._lock = threading.Lock()
        self._closed = False

    def frame(self, stream: int, frame: Frame, decision: Decision | None) -> None:
        if frame.image is None:
            return
        while stream >= len(self.writers):  # a camera a site reload added: FILE_<i>
            t = self.targets[0]
            i = len(self.writers)
            target = t.with_name(f"{t.stem.rsplit('_', 1)[0] if len(self.targets) > 1 else t.stem}_{i}{t.suffix}")
            self.targets.append(target)
            self.temps.append(target.with_name(f".{target.stem}.{os.getpid()}.partial{target.suffix}"))
            self.writers.append(None)
        bgr = annotate(frame.image, decision)
        with self._lock:
            if self._closed:
                return
            writer = self.writers[stream]
            if writer is None:
                fourcc = cv2.VideoWriter_fourcc(*self.FOURCC[self.targets[stream].suffix.lower()])
                self.temps[stream].parent.mkdir(parents=True, exist_ok=True)
                writer = cv2.VideoWriter(str(self.temps[stream]), fourcc, self.fps_of(stream),
                                         (bgr.shape[1], bgr.shape[0]))
                if not writer.isOpened():
                    raise FrosterError(f"cannot write {self.targets[stream]} (OpenCV has no encoder for it here)")
                self.writers[stream] = writer
            writer.write(bgr)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for writer, temp, target in zip(self.writers, self.temps, self.targets, strict=False):
                if writer is not None:
                    writer.release()
                    os.replace(temp, target)


def require_display() -> None:
    """MissingCapability unless OpenCV can open a window here."""
    gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].split(":", 1)[1].strip().upper() == "NONE":
        raise MissingCapability("--show needs OpenCV with a GUI (opencv-python-headless has none: pip install "
                                "opencv-python); use --record FILE instead")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise MissingCapability("--show needs a display and DISPLAY is not set; use --record FILE or --jsonl instead")
    try:
        cv2.namedWindow("froster-edge")
        cv2.destroyWindow("froster-edge")
    except cv2.error as e:
        raise MissingCapability(f"--show cannot open a window: {e.msg or e}") from e


class ShowSink:
    """One window per stream, drawn by one display thread (GUI calls stay on one thread); the
    newest frame of each stream is shown, older ones are skipped. q or Esc stops the run."""

    def __init__(self, names: list[str], stop: threading.Event):
        require_display()
        self.names, self.stop = names, stop
        self._latest: dict[int, np.ndarray] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="display", daemon=True)
        self._thread.start()

    def frame(self, stream: int, frame: Frame, decision: Decision | None) -> None:
        if frame.image is not None:
            bgr = annotate(frame.image, decision)
            with self._lock:
                self._latest[stream] = bgr

    def _loop(self) -> None:
        while not self.stop.is_set():
            with self._lock:
                pending, self._latest = self._latest, {}
            for stream, bgr in pending.items():
                name = self.names[stream] if stream < len(self.names) else str(stream)  # added by a reload
                cv2.imshow(f"froster-edge {stream}: {name}", bgr)
            if cv2.waitKey(15) & 0xFF in (ord("q"), 27):
                self.stop.set()
        cv2.destroyAllWindows()

    def close(self) -> None:
        self._thread.join(timeout=1.0)
