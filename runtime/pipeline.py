"""The streaming pipeline: sources -> clips -> one batched encoder call -> classifier -> sinks.

Per stream a reader thread (one-frame slot) and an assembler thread (frame sinks, sampling,
resize/crop once, ring buffer, a clip every `hop`). The main thread batches clips into calls of the
bundle's fixed stream count (a short batch padded with copies, discarded), classifies and emits;
it also watches the label file. Live sources never wait for the encoder: a newer clip replaces an
untaken one (counted), so latency cannot build up; files read as fast as possible lose nothing.
No torch is imported here or below (only the torch backend imports it).

See docs/runtime.md.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..bundle import manifest as mf
from ..bundle.labels import LabelTable, load_labels
from ..errors import ConfigError, FrosterError
from ..sampling import Ticker
from ..spatial import SpatialSpec
from ..video import stream_timing
from .assembly import ClipAssembler, RateGate, SampleRule
from .backends import Opened, open_backend
from .classifier import Classifier, LabelWatcher
from .options import CameraOptions, CaptureOptions, RunOptions, camera_list, check_options
from .sinks import Decision, DecisionSink, FrameSink
from .source_url import read_password
from .sources import END, Frame, FrameSlot, Reader, SourceSpec, capture_fps, declared_frames, open_all, open_first, parse_source
from .stats import RunStats, StreamCounters

log = logging.getLogger(__name__)


@dataclass
class Clip:
    """T preprocessed frames of one stream, ready for the encoder."""

    stream: int
    frames: np.ndarray  # (T, S, S, 3) uint8
    index: int  # newest frame's index in its source
    media_time: float
    captured: float  # newest frame's monotonic capture time
    wall: float
    ready: float  # monotonic time the clip was published
    short: bool = False  # a file shorter than one clip: its frames by the sampling spec's short-video rule


class ClipBoard:
    """The pending clip of each stream, and which streams have ended (shared by all threads)."""

    def __init__(self, streams: int):
        self.pending: list[Clip | None] = [None] * streams
        self.done = [False] * streams
        self.latest: list[Decision | None] = [None] * streams  # read by frame sinks
        self._cond = threading.Condition()

    def add_stream(self) -> None:
        with self._cond:
            self.pending.append(None)
            self.done.append(False)
            self.latest.append(None)

    def publish(self, clip: Clip, wait: bool, stop: threading.Event) -> bool:
        """Post a clip; True when it replaced one the encoder never took (live sources only)."""
        with self._cond:
            while wait and self.pending[clip.stream] is not None and not stop.is_set():
                self._cond.wait(0.1)
            if stop.is_set():
                return False
            replaced = self.pending[clip.stream] is not None
            self.pending[clip.stream] = clip
            self._cond.notify_all()
            return replaced

    def finish(self, stream: int) -> None:
        with self._cond:
            self.done[stream] = True
            self._cond.notify_all()

    def collect(self, gather_all: bool, timeout: float) -> list[Clip] | None:
        """The pending clips (any, or once every running stream has one with `gather_all`);
        [] after `timeout`; None when every stream has ended and nothing is pending."""

        def ready() -> bool:
            have = [c is not None for c in self.pending]
            if gather_all:
                return any(have) and all(h or d for h, d in zip(have, self.done, strict=False))
            return any(have)

        with self._cond:
            if not ready() and not all(self.done):
                self._cond.wait_for(lambda: ready() or all(self.done), timeout)
            if not ready():  # a timeout hands back nothing, never a partial batch of files (deterministic batching)
                return None if all(self.done) else []
            clips = [c for c in self.pending if c is not None]
            self.pending = [None] * len(self.pending)
            self._cond.notify_all()
            return clips


class Assembler(threading.Thread):
    """One stream's clip assembly: frames from the reader's slot to clips on the board."""

    def __init__(self, stream: int, slot: FrameSlot, board: ClipBoard, assembler: ClipAssembler,
                 crop: Callable[[np.ndarray], np.ndarray], live: bool, frame_sinks: list[FrameSink], stats: RunStats, counters: StreamCounters,
                 stop: threading.Event, run_stop: threading.Event | None = None, fps: float = 0.0):
        super().__init__(name=f"assembler-{stream}", daemon=True)
        self.stream, self.slot, self.board, self.assembler, self.crop = stream, slot, board, assembler, crop
        self.live, self.frame_sinks, self.stats, self.counters, self.stop = live, frame_sinks, stats, counters, stop
        self.run_stop = run_stop or stop
        self.fps = fps

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # a failing frame sink, or a bug: stop the run with the reason, never hang it
            self.counters.error = str(e) if isinstance(e, FrosterError) else f"internal error: {type(e).__name__}: {e}"
            self.run_stop.set()
        finally:
            self.board.finish(self.stream)

    def _loop(self) -> None:
        waiting, segment, last = time.monotonic(), 0, None
        while True:
            item = self.slot.take(0.1)
            if item is None:
                if self.stop.is_set():
                    return
                continue
            if item is END:
                self._finish(last)
                return
            last = item
            frame: Frame = item  # type: ignore[assignment]
            self.stats.record("capture_wait", time.monotonic() - waiting, self.stream)
            if frame.segment != segment:
                self.assembler.restart()
                segment = frame.segment
            for sink in self.frame_sinks:
                sink.frame(self.stream, frame, self.board.latest[self.stream])
            if frame.image is not None and self.assembler.wants(frame.position):
                self.counters.frames_sampled += 1
                t = time.monotonic()
                small = self.crop(frame.image)
                self.stats.record("preprocess", time.monotonic() - t, self.stream)
                self.assembler.keep(frame.index, small)
                self._post(self.assembler.take_first(frame.index), frame)
                self._post(self.assembler.add(small), frame)
            elif frame.image is not None and self.assembler.keeps(frame.index):  # first view, or kept for a short file
                self.counters.frames_sampled += self.assembler.in_first_view(frame.index)
                self.assembler.keep(frame.index, self.crop(frame.image))
                self._post(self.assembler.take_first(frame.index), frame)
            waiting = time.monotonic()

    def _post(self, clip: np.ndarray | None, frame: Frame) -> None:
        """Publish a clip whose newest frame is `frame`."""
        if clip is None:
            return
        self.counters.clips += 1
        posted = Clip(self.stream, clip, frame.index, frame.media_time, frame.captured, frame.wall, time.monotonic())
        if self.board.publish(posted, wait=not self.live, stop=self.stop):
            self.counters.clips_skipped += 1

    def _finish(self, last: Frame | None) -> None:
        """A file that ended before its first decision: one short clip over the frames it has."""
        if last is None or self.stop.is_set():
            return
        clip = self.assembler.finish(last.index + 1, self.fps)
        if clip is not None:
            self.counters.clips += 1
            self.board.publish(Clip(self.stream, clip, last.index, last.media_time, last.captured, last.wall,
                                    time.monotonic(), short=True), wait=True, stop=self.stop)


def first_clip(cam: Camera, fps: float, declared: int) -> np.ndarray | None:
    """A file's first clip by the bundle's spec (eval's first view: the reference clamps it to its
    selective window where the container reports a duration), when the spec sets the spacing."""
    spec = cam.rule.spec
    if cam.spec.kind != "file" or cam.rule.fps is not None or cam.rule.subsample is not None or not spec.uses_timing:
        return None
    timed = stream_timing(str(cam.spec.target))
    if not timed:
        return None
    count = max(declared, math.ceil(spec.window_frames(fps)) + 1)  # a clip's frames, unclamped by the end
    return spec.clip(count, fps, 0.0, timed)


def reader_filter(every_frame: bool, live_stream: bool, period: float, rounding: str, fps: float,
                  keeps: Callable[[int], bool] | None = None, sink_fps: float | None = None,
                  clock: Callable[[], float] = time.monotonic) -> Callable[[float], bool] | None:
    """Which frames a reader converts to RGB and hands on: all of them when a frame sink draws every
    frame; for a camera or stream, those a ticker of the assembler's period takes by capture time
    (seconds x fps): the assembler's own ticker then takes every frame it is given, and a frame it
    would have skipped never comes; for a file, the sampled frame indices (plus those `keeps` holds
    for a short file's clip or a file's first clip). `sink_fps`: frame sinks that want at most that many frames a second of
    wall time (event clips) get them too, by a RateGate on the reader's clock: a 30 fps camera with
    clips at 10 fps converts a third of its frames, not all of them."""
    if every_frame:
        return None
    ticker = Ticker(period, rounding)
    if live_stream:
        sampled = lambda seconds: ticker.take(seconds * fps)  # noqa: E731
    else:
        sampled = lambda index: ticker.is_sampled(int(index)) or (keeps is not None and keeps(int(index)))  # noqa: E731
    if not sink_fps:
        return sampled
    gate = RateGate(sink_fps)

    def wanted(position: float) -> bool:
        due = gate.take(clock())  # both evaluated: a sampled frame also takes the sinks' tick
        return sampled(position) or due

    return wanted


@dataclass
class Camera:
    """One running stream: a camera's options made concrete, its classifier and its threads."""

    index: int  # the stream number (never reused, even after a camera is removed)
    options: CameraOptions
    spec: SourceSpec
    rule: SampleRule
    capture: CaptureOptions
    hop: int
    classifier: Classifier
    table_path: Path
    stop: threading.Event  # set to stop this camera alone (the run's stop sets every camera's)
    removed: bool = False

    @property
    def name(self) -> str:
        return self.options.name


def subset_table(table: LabelTable, names: tuple[str, ...] | None, where: str) -> LabelTable:
    """The table restricted to `names` (in the table's order), or the table itself."""
    if not names:
        return table
    missing = [n for n in names if n not in table.names]
    if missing:
        raise ConfigError(f"{where}: {', '.join(repr(m) for m in missing)} not in the label table "
                          f"({', '.join(table.names[:8])}{', ...' if len(table.names) > 8 else ''})")
    return table.select([i for i, n in enumerate(table.names) if n in names])


def source_of(cam: CameraOptions) -> SourceSpec:
    """A camera's source parsed, its password read now (password_env / password_file)."""
    where = f"cameras[{cam.name}]"
    return parse_source(cam.source, read_password(where, cam.password_env, cam.password_file), cam.rtsp_transport, where)


class Pipeline:
    """A bundle, its label table(s) and a backend, run over cameras into sinks. `run()` returns the stats.

    Cameras can be added and removed while it runs (`add_camera`, `remove_camera`, called on the
    decision loop's thread, e.g. by `on_idle`); the others go on undisturbed.
    """

    def __init__(self, bundle: str | Path, options: RunOptions, sinks: list[DecisionSink] | None = None,
                 frame_sinks: list[FrameSink] | None = None,
                 opened: Opened | None = None, stop: threading.Event | None = None):
        check_options(options)
        self.bundle, self.options = Path(bundle), options
        self.sinks = sinks if sinks is not None else []
        self.frame_sinks = frame_sinks if frame_sinks is not None else []  # the caller's list: it may add to it
        self.stop = stop or threading.Event()
        self.manifest = mf.read_manifest(self.bundle)
        pre = self.manifest["preprocessing"]
        self.num_frames, self.size = int(pre["num_frames"]), int(pre["image_size"])
        self.spatial: SpatialSpec = mf.spatial_spec(self.manifest)  # each frame resized and cropped once, by it
        model = self.manifest["model"]
        self._fingerprint, self._dim = model["fingerprint"], int(model["embed_dim"])
        if options.labels is None:  # the file hashed is the file loaded
            labels_file = (self.manifest.get("labels") or {}).get("file", mf.LABELS_FILE)
            mf.verify_bundle(self.bundle, [labels_file])
            self.labels_path = mf.bundle_path(self.bundle, labels_file)
        else:
            self.labels_path = Path(options.labels)
        self.tables: dict[Path, LabelTable] = {}
        self.watchers: dict[Path, LabelWatcher] = {}
        self.cameras: list[Camera] = []
        self._planned = [self.prepare(c) for c in camera_list(options)]  # a typo fails before any loading
        self.opened = opened or open_backend(options.backend, self.bundle, self.manifest, ov_device=options.ov_device)
        self.backend = self.opened.backend
        self.stats = RunStats(options.stats_window)
        self.on_batch: Callable[[np.ndarray], None] | None = None  # benchmarks record the exact batches
        self.on_idle: Callable[[], None] | None = None  # called between decisions (a site's reload)
        self._board: ClipBoard | None = None
        self._threads: list[threading.Thread] = []

    @property
    def specs(self) -> list[SourceSpec]:
        return [c.spec for c in self.cameras] or [c.spec for c in self._planned]

    @property
    def classifier(self) -> Classifier:
        return (self.cameras or self._planned)[0].classifier

    def _table(self, path: Path) -> LabelTable:
        if path not in self.tables:
            self.tables[path] = load_labels(path, self._fingerprint, self._dim)
            self.watchers[path] = LabelWatcher(path, self._fingerprint, self._dim)
        return self.tables[path]

    def prepare(self, cam: CameraOptions, index: int = -1) -> Camera:
        """A camera's source parsed, sampling rule and classifier made: every error before anything opens."""
        o, where = self.options, f"camera {cam.name}"
        spec = source_of(cam)
        sampling = cam.sampling or o.sampling
        rule = SampleRule.from_options(sampling, self.manifest["preprocessing"])
        capture = replace(o.capture, realtime=o.capture.realtime if cam.realtime is None else cam.realtime,
                          loop=o.capture.loop if cam.loop is None else cam.loop)
        table_path = Path(cam.table) if cam.table is not None else self.labels_path
        table = subset_table(self._table(table_path), cam.labels, f"{where}: labels")
        copts = o.classifier if cam.threshold is None else replace(o.classifier, threshold=cam.threshold)
        return Camera(index, cam, spec, rule, capture, sampling.hop, Classifier(table, copts), table_path,
                      threading.Event())

    def describe(self) -> str:
        b, o = self.opened, self.options
        auto = f" (auto; passed over: {'; '.join(f'{k}: {v}' for k, v in b.passed_over.items())})" if b.passed_over else ""
        return (f"bundle {self.bundle}: T={self.num_frames}, {self.size} px ({self.spatial.describe()}), "
                f"{self.backend.streams} clip(s) per call; "
                f"backend {self.backend.name}{auto}: {self.backend.detail}; labels: {len(self.classifier.table.names)} "
                f"classes from {self.labels_path}; hop {o.sampling.hop}")

    def run(self) -> RunStats:
        """Open the sources, start the threads, decide until every source ends, --max-decisions, or Ctrl-C."""
        o = self.options
        self.stats.info = {"backend": self.backend.name, "backend_detail": self.backend.detail,
                           "bundle": str(self.bundle), "num_frames": self.num_frames, "image_size": self.size,
                           "streams_per_call": self.backend.streams, "hop": o.sampling.hop,
                           "warmup_s": round(self.opened.warmup_s, 3)}
        board = self._board = ClipBoard(0)
        self.stats.started = time.monotonic()
        try:
            if self._open_all(self._planned):  # False when stopped while a stream was still connecting
                self.stats.started = time.monotonic()
                self._loop(board, gather_all=not any(self._live(c) for c in self.cameras))
        except KeyboardInterrupt:
            self.stats.info["interrupted"] = True
        except BrokenPipeError:  # stdout closed by its reader (`| head`): a normal way to stop
            self.stats.info["stdout_closed"] = True
        finally:
            self.stop.set()
            for cam in self.cameras:
                cam.stop.set()
            for t in self._threads:
                t.join(timeout=2.0)
            self.stats.finished = time.monotonic()
            self.stats.info["label_swaps"] = sum(w.swaps for w in self.watchers.values())
            self.stats.info["label_rejections"] = sum(w.rejected for w in self.watchers.values())
            for sink in [*self.sinks, *self.frame_sinks]:
                sink.close()
        return self.stats

    def _live(self, cam: Camera) -> bool:
        return cam.spec.live or cam.capture.realtime

    def _open_all(self, planned: list[Camera]) -> bool:
        """Open every source (all or none: a run never starts on a source it cannot read), then
        start each one's reader and assembler threads; False when stopped while one was connecting."""
        caps = open_all([(cam.spec, cam.capture) for cam in planned], self.stop)
        if caps is None:
            return False
        log.info(self.describe())
        threads = [t for cam, cap in zip(planned, caps, strict=False) for t in self._threads_of(cam, cap)]
        for t in threads:  # together: the first clips of all streams are ready together, batched
            t.start()
        return True

    def _start(self, cam: Camera, cap) -> None:
        for t in self._threads_of(cam, cap):
            t.start()

    def _threads_of(self, cam: Camera, cap) -> list[threading.Thread]:
        """Register an opened camera as the next stream; its reader and assembler threads."""
        board = self._board
        assert board is not None
        i = cam.index = len(self.cameras)
        self.cameras.append(cam)
        board.add_stream()
        live = self._live(cam)
        fps = capture_fps(cap) or cam.capture.fallback_fps
        if not capture_fps(cap):
            log.info(f"stream {i}: {cam.spec.text} does not report its frame rate; assuming {fps:g} fps")
        ticker = cam.rule.ticker(fps)
        counters = StreamCounters(cam.spec.text, cam.spec.kind, round(fps, 3), cam.rule.describe(fps), camera=cam.name)
        self.stats.add_stream(i, counters)
        # live: positions in seconds (x fps); files: frame indices. A file's reader hands over only the frames
        # a clip uses (the others are not converted to RGB), and, when it may be shorter than one clip (its
        # container says so, or has no count), every frame before the first decision for the short clip.
        assembler = ClipAssembler(self.num_frames, self.size, cam.hop, ticker.period, cam.rule.spec.rounding,
                                  fps if live else 1.0, cam.rule.spec if cam.spec.kind == "file" else None,
                                  first_clip(cam, fps, declared_frames(cap)))
        if declared_frames(cap) > assembler.first_due + 1:
            assembler.short = None  # long enough for a decision: no frame kept for a short clip
        # a frame sink that draws every frame gets them all; one that does not (the web view) still
        # gets every frame of a live source, as before, and the sampled ones of a fast file; one that
        # says its rate (`frame_fps`: event clips) gets the sampled frames and that many a second
        rated = [s.frame_fps for s in self.frame_sinks if getattr(s, "frame_fps", None)]
        others = [s for s in self.frame_sinks if not getattr(s, "frame_fps", None)]
        every = any(getattr(sink, "needs_every_frame", True) for sink in others)
        want = reader_filter(every or (live and bool(others)), cam.spec.live, ticker.period,
                             cam.rule.spec.rounding, fps, assembler.keeps, max(rated, default=None))
        slot = FrameSlot(keep_newest=live)
        threads = [Reader(cam.spec, cap, slot, cam.stop, cam.capture, self.stats, counters, want, str(i), i,
                          on_state=lambda up, why, name=cam.name: self._camera_state(name, up, why),
                          respec=(lambda o=cam.options: source_of(o)) if cam.spec.live else None),
                   Assembler(i, slot, board, assembler, self._crop, live, self.frame_sinks, self.stats, counters,
                             cam.stop, self.stop, fps)]
        name = "" if cam.name == cam.spec.text else f"camera {cam.name}: "
        log.info(f"stream {i}: {name}{cam.spec.text} ({'realtime ' if cam.spec.kind == 'file' and live else ''}"
                 f"{cam.spec.kind}, {fps:.4g} fps), sampling {cam.rule.describe(fps)}, hop {cam.hop}")
        self._threads = [t for t in self._threads if t.is_alive() or not t.ident] + threads
        return threads

    def _crop(self, image: np.ndarray) -> np.ndarray:
        return self.spatial.center_crop(image, self.size)

    def add_camera(self, cam: CameraOptions) -> bool:
        """Start a camera while the run goes on; False (and one log line) when it cannot be opened."""
        try:
            planned = self.prepare(cam)
            cap = open_first(planned.spec, planned.capture)
        except FrosterError as e:
            log.warning(f"camera {cam.name}: not added: {e}")
            return False
        self._start(planned, cap)
        for sink in [*self.sinks, *self.frame_sinks]:  # e.g. MQTT announces it (availability, discovery)
            added = getattr(sink, "camera_added", None)
            if added is not None:
                added(cam.name, list(planned.classifier.table.names))
        return True

    def _camera_state(self, name: str, up: bool, why: str) -> None:
        """A camera went down or came back (a reader's thread): every sink that shows it hears of it."""
        for sink in [*self.sinks, *self.frame_sinks]:
            state = getattr(sink, "camera_state", None)
            if state is not None:
                state(name, up, why)

    def remove_camera(self, name: str) -> None:
        """Stop one camera's threads; its stream ends ("removed") and the sinks hear of it."""
        for cam in self.cameras:
            if cam.name == name and not cam.removed:
                cam.removed = True
                cam.stop.set()
                self.stats.streams[cam.index].ended = "removed"
                for sink in [*self.sinks, *self.frame_sinks]:
                    gone = getattr(sink, "camera_removed", None)
                    if gone is not None:
                        gone(name)
                for sink in self.frame_sinks:  # frame sinks keep what they hold per stream number
                    gone = getattr(sink, "stream_removed", None)
                    if gone is not None:
                        gone(cam.index)
                self.stats.stream_removed(cam.index)  # the oldest removed ones are folded into one total
                log.info(f"stream {cam.index}: camera {name} removed")

    def camera_labels(self) -> dict[str, list[str]]:
        """Each camera's class names (its label subset or table), before or while it runs."""
        return {c.name: list(c.classifier.table.names) for c in (self.cameras or self._planned) if not c.removed}

    def running_cameras(self) -> dict[str, CameraOptions]:
        return {c.name: c.options for c in self.cameras if not c.removed}

    def _poll_tables(self) -> None:
        """Swap in a changed label table for every camera that uses it (a camera whose subset the
        new table lacks keeps its old one, said once)."""
        for path, watcher in self.watchers.items():
            table = watcher.poll()
            if table is None:
                continue
            self.tables[path] = table
            for cam in self.cameras:
                if cam.table_path == path:
                    try:
                        cam.classifier.set_table(subset_table(table, cam.options.labels, f"camera {cam.name}: labels"))
                    except ConfigError as e:
                        log.warning(f"labels: {e}; camera {cam.name} keeps its table")

    def _loop(self, board: ClipBoard, gather_all: bool) -> None:
        next_poll = 0.0
        limit = self.options.max_decisions
        while not self.stop.is_set() and (limit is None or self.stats.decisions < limit):
            clips = board.collect(gather_all, timeout=0.1)
            if clips is None:
                return
            if time.monotonic() >= next_poll:
                self._poll_tables()
                next_poll = time.monotonic() + self.options.label_poll_s
            if self.on_idle is not None:
                self.on_idle()
            streams = self.backend.streams
            for start in range(0, len(clips), streams):
                self._decide(board, clips[start:start + streams])

    def _decide(self, board: ClipBoard, group: list[Clip]) -> None:
        now = time.monotonic()
        for c in group:
            self.stats.record("queue", now - c.ready, c.stream)
        batch = np.stack([c.frames for c in group] + [group[-1].frames] * (self.backend.streams - len(group)))
        if self.on_batch is not None:
            self.on_batch(batch)
        t0 = time.monotonic()
        embeddings = self.backend(batch)[: len(group)]  # (n, D)
        t1 = time.monotonic()
        self.stats.record("encode", t1 - t0)
        self.stats.batches += 1
        for c, e in zip(group, embeddings, strict=False):
            cam = self.cameras[c.stream]
            if cam.removed:
                continue
            tc = time.monotonic()
            s = cam.classifier([c.stream], e[None])[0]
            t2 = time.monotonic()
            self.stats.record("classify", t2 - tc, c.stream)
            self.stats.record("capture_to_decision", t2 - c.captured, c.stream)
            decision = Decision(c.stream, cam.spec.text, c.index, c.media_time, c.wall, s.label, s.score, s.top,
                                {"capture_to_decision": 1000 * (t2 - c.captured), "queue": 1000 * (t0 - c.ready),
                                 "encode": 1000 * (t1 - t0)}, short=c.short, camera=cam.name,
                                classes=cam.classifier.table.names, probs=s.probs, embedding=e)
            board.latest[c.stream] = decision
            self.stats.streams[c.stream].decisions += 1
            self.stats.decisions += 1
            for sink in self.sinks:
                sink.emit(decision)

    def errors(self) -> list[str]:
        return [f"stream {i} ({s.source}): {s.error}" if s.source not in s.error else f"stream {i}: {s.error}"
                for i, s in self.stats.streams.items() if s.error]
