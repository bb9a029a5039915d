"""The streaming pipeline: sources -> clips -> one batched encoder call -> classifier -> sinks.

Threads, per stream: a reader (sources.Reader: capture into a one-frame slot) and an assembler
(take a frame, hand it to the frame sinks, sample it, resize/crop it once, ring buffer, publish
a clip every `hop` sampled frames). The main thread waits for clips, batches the streams' clips
into calls of the bundle's fixed stream count (padding a short batch with copies, whose outputs
are discarded), classifies, and emits decisions; between decisions it checks the label file.

Live sources (and --realtime files) never wait for the encoder: a clip not yet taken is
replaced by the newer one (counted as skipped), as the newest frame replaces an untaken one in
the reader's slot, so nothing queues and latency cannot build up. Files read as fast as
possible never lose anything: each hand-over waits, so every sampled frame and every clip is
used, and the main loop waits for all streams' clips to batch them together.

No torch is imported here or by anything this imports (only the torch backend imports it).
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import FrosterError
from ..bundle import manifest as mf
from ..bundle.labels import load_labels
from ..video import resize_center_crop
from .backends import Opened, open_backend
from .classifier import Classifier, LabelWatcher
from .options import RunOptions, check_options
from .sampler import ClipAssembler, SampleRule, is_sampled_index
from .sinks import Decision, DecisionSink, FrameSink
from .sources import END, Frame, FrameSlot, Reader, SourceError, SourceSpec, capture_fps, open_first, parse_source
from .stats import RunStats, StreamCounters


def stderr(message: str) -> None:
    print(f"froster-edge: {message}", file=sys.stderr, flush=True)


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


class ClipBoard:
    """The pending clip of each stream, and which streams have ended (shared by all threads)."""

    def __init__(self, streams: int):
        self.pending: list[Clip | None] = [None] * streams
        self.done = [False] * streams
        self.latest: list[Decision | None] = [None] * streams  # read by frame sinks
        self._cond = threading.Condition()

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
                return any(have) and all(h or d for h, d in zip(have, self.done))
            return any(have)

        with self._cond:
            if not ready() and not all(self.done):
                self._cond.wait_for(lambda: ready() or all(self.done), timeout)
            clips = [c for c in self.pending if c is not None]
            if not clips:
                return None if all(self.done) else []
            self.pending = [None] * len(self.pending)
            self._cond.notify_all()
            return clips


class Assembler(threading.Thread):
    """One stream's clip assembly: frames from the reader's slot to clips on the board."""

    def __init__(self, stream: int, slot: FrameSlot, board: ClipBoard, assembler: ClipAssembler, size: int,
                 live: bool, frame_sinks: list[FrameSink], stats: RunStats, counters: StreamCounters,
                 stop: threading.Event):
        super().__init__(name=f"assembler-{stream}", daemon=True)
        self.stream, self.slot, self.board, self.assembler, self.size = stream, slot, board, assembler, size
        self.live, self.frame_sinks, self.stats, self.counters, self.stop = live, frame_sinks, stats, counters, stop

    def run(self) -> None:
        try:
            self._loop()
        except Exception as e:  # a failing frame sink, or a bug: stop the run with the reason, never hang it
            self.counters.error = str(e) if isinstance(e, FrosterError) else f"internal error: {type(e).__name__}: {e}"
            self.stop.set()
        finally:
            self.board.finish(self.stream)

    def _loop(self) -> None:
        waiting, segment = time.monotonic(), 0
        while True:
            item = self.slot.take(0.1)
            if item is None:
                if self.stop.is_set():
                    return
                continue
            if item is END:
                return
            frame: Frame = item  # type: ignore[assignment]
            self.stats.record("capture_wait", time.monotonic() - waiting)
            if frame.segment != segment:
                self.assembler.restart()
                segment = frame.segment
            for sink in self.frame_sinks:
                sink.frame(self.stream, frame, self.board.latest[self.stream])
            if frame.image is not None and self.assembler.wants(frame.position):
                self.counters.frames_sampled += 1
                t = time.monotonic()
                small = resize_center_crop(frame.image, self.size)
                self.stats.record("preprocess", time.monotonic() - t)
                clip = self.assembler.add(small)
                if clip is not None:
                    self.counters.clips += 1
                    posted = Clip(self.stream, clip, frame.index, frame.media_time, frame.captured, frame.wall,
                                  time.monotonic())
                    if self.board.publish(posted, wait=not self.live, stop=self.stop):
                        self.counters.clips_skipped += 1
            waiting = time.monotonic()


class Pipeline:
    """A bundle, its label table and a backend, run over sources into sinks. `run()` returns the stats."""

    def __init__(self, bundle: str | Path, options: RunOptions, sinks: list[DecisionSink] | None = None,
                 frame_sinks: list[FrameSink] | None = None, log: Callable[[str], None] = stderr,
                 opened: Opened | None = None, stop: threading.Event | None = None):
        check_options(options)
        self.bundle, self.options, self.log = Path(bundle), options, log
        self.sinks = sinks if sinks is not None else []
        self.frame_sinks = frame_sinks if frame_sinks is not None else []  # the caller's list: it may add to it
        self.stop = stop or threading.Event()
        self.manifest = mf.read_manifest(self.bundle)
        pre = self.manifest["preprocessing"]
        self.num_frames, self.size = int(pre["num_frames"]), int(pre["image_size"])
        self.rule = SampleRule.from_options(options.sampling, pre)
        self.specs: list[SourceSpec] = [parse_source(s) for s in options.sources]  # a typo fails before any loading
        model = self.manifest["model"]
        default_labels = self.bundle / self.manifest.get("labels", {}).get("file", mf.LABELS_FILE)
        self.labels_path = Path(options.labels) if options.labels is not None else default_labels
        if options.labels is None:
            mf.verify_bundle(self.bundle, [default_labels.name])
        table = load_labels(self.labels_path, model["fingerprint"], int(model["embed_dim"]))
        self.classifier = Classifier(table, options.classifier)
        self.watcher = LabelWatcher(self.labels_path, model["fingerprint"], int(model["embed_dim"]), log)
        self.opened = opened or open_backend(options.backend, self.bundle, self.manifest, log)
        self.backend = self.opened.backend
        self.stats = RunStats(options.stats_window)
        self.on_batch: Callable[[np.ndarray], None] | None = None  # benchmarks record the exact batches

    def describe(self) -> str:
        b, o = self.opened, self.options
        auto = f" (auto; passed over: {'; '.join(f'{k}: {v}' for k, v in b.passed_over.items())})" if b.passed_over else ""
        return (f"bundle {self.bundle}: T={self.num_frames}, {self.size} px, {self.backend.streams} clip(s) per call; "
                f"backend {self.backend.name}{auto}: {self.backend.detail}; labels: {len(self.classifier.table.names)} "
                f"classes from {self.labels_path}; hop {o.sampling.hop}")

    def run(self) -> RunStats:
        """Open the sources, start the threads, decide until every source ends, --max-decisions, or Ctrl-C."""
        o = self.options
        self.stats.info = {"backend": self.backend.name, "backend_detail": self.backend.detail,
                           "bundle": str(self.bundle), "num_frames": self.num_frames, "image_size": self.size,
                           "streams_per_call": self.backend.streams, "hop": o.sampling.hop,
                           "warmup_s": round(self.opened.warmup_s, 3)}
        live = [spec.live or o.capture.realtime for spec in self.specs]
        board = ClipBoard(len(self.specs))
        threads = self._streams(board, live)
        self.stats.started = time.monotonic()
        for t in threads:
            t.start()
        try:
            self._loop(board, gather_all=not any(live))
        except KeyboardInterrupt:
            self.stats.info["interrupted"] = True
        except BrokenPipeError:  # stdout closed by its reader (`| head`): a normal way to stop
            self.stats.info["stdout_closed"] = True
        finally:
            self.stop.set()
            for t in threads:
                t.join(timeout=2.0)
            self.stats.finished = time.monotonic()
            self.stats.info["label_swaps"], self.stats.info["label_rejections"] = self.watcher.swaps, self.watcher.rejected
            for sink in [*self.sinks, *self.frame_sinks]:
                sink.close()
        return self.stats

    def _streams(self, board: ClipBoard, live: list[bool]) -> list[threading.Thread]:
        """Open every source (all or none: a run never starts on a source it cannot read), and make
        each one's reader and assembler threads."""
        o, caps = self.options, []
        try:
            for spec in self.specs:
                caps.append(open_first(spec, o.capture))
        except SourceError:
            for cap in caps:
                cap.release()
            raise
        self.log(self.describe())
        threads: list[threading.Thread] = []
        for i, (spec, cap) in enumerate(zip(self.specs, caps)):
            fps = capture_fps(cap) or o.capture.fallback_fps
            if not capture_fps(cap):
                self.log(f"stream {i}: {spec.text} does not report its frame rate; assuming {fps:g} fps")
            period = self.rule.period_frames(fps)
            counters = StreamCounters(spec.text, spec.kind, round(fps, 3), self.rule.describe(fps))
            self.stats.streams.append(counters)
            # live: sampling by capture time (seconds); fast files: by frame index (a prefilter skips RGB conversion)
            assembler = ClipAssembler(self.num_frames, self.size, o.sampling.hop, period / fps if live[i] else period)
            every = any(getattr(sink, "needs_every_frame", True) for sink in self.frame_sinks)
            want = None if live[i] or every else (lambda index, p=period: is_sampled_index(index, p))
            slot = FrameSlot(keep_newest=live[i])
            threads.append(Reader(spec, cap, slot, self.stop, o.capture, self.stats, counters, want, self.log, str(i)))
            threads.append(Assembler(i, slot, board, assembler, self.size, live[i], self.frame_sinks, self.stats,
                                     counters, self.stop))
            self.log(f"stream {i}: {spec.text} ({'realtime ' if spec.kind == 'file' and live[i] else ''}{spec.kind}, "
                     f"{fps:.4g} fps), sampling {self.rule.describe(fps)}")
        return threads

    def _loop(self, board: ClipBoard, gather_all: bool) -> None:
        next_poll = 0.0
        limit = self.options.max_decisions
        while not self.stop.is_set() and (limit is None or self.stats.decisions < limit):
            clips = board.collect(gather_all, timeout=0.1)
            if clips is None:
                return
            if time.monotonic() >= next_poll:
                table = self.watcher.poll()
                if table is not None:
                    self.classifier.set_table(table)
                next_poll = time.monotonic() + self.options.label_poll_s
            streams = self.backend.streams
            for start in range(0, len(clips), streams):
                self._decide(board, clips[start:start + streams])

    def _decide(self, board: ClipBoard, group: list[Clip]) -> None:
        now = time.monotonic()
        for c in group:
            self.stats.record("queue", now - c.ready)
        batch = np.stack([c.frames for c in group] + [group[-1].frames] * (self.backend.streams - len(group)))
        if self.on_batch is not None:
            self.on_batch(batch)
        t0 = time.monotonic()
        embeddings = self.backend(batch)[: len(group)]  # (n, D)
        t1 = time.monotonic()
        scores = self.classifier([c.stream for c in group], embeddings)
        t2 = time.monotonic()
        self.stats.record("encode", t1 - t0)
        self.stats.batches += 1
        for c, s in zip(group, scores):
            self.stats.record("classify", (t2 - t1) / len(group))
            self.stats.record("capture_to_decision", t2 - c.captured)
            decision = Decision(c.stream, self.specs[c.stream].text, c.index, c.media_time, c.wall, s.label, s.score,
                                s.top, {"capture_to_decision": 1000 * (t2 - c.captured), "queue": 1000 * (t0 - c.ready),
                                        "encode": 1000 * (t1 - t0)})
            board.latest[c.stream] = decision
            self.stats.streams[c.stream].decisions += 1
            self.stats.decisions += 1
            for sink in self.sinks:
                sink.emit(decision)

    def errors(self) -> list[str]:
        return [f"stream {i} ({s.source}): {s.error}" if s.source not in s.error else f"stream {i}: {s.error}"
                for i, s in enumerate(self.stats.streams) if s.error]
