"""Latency and counters of a run: per-stage percentiles, capture-to-decision, drops, decisions/s.

Stages (milliseconds): read (a frame from the source; a camera's wait for its next one),
capture_wait (an assembler waiting for its reader), preprocess (resize + crop of one sampled frame),
queue (a ready clip waiting for the encoder), encode (one backend call on all streams' clips),
classify (one decision), capture_to_decision (a clip's newest frame captured to its decision).
Each keeps its newest `window` samples (flat memory in a long run) plus an overall count and sum;
recording is thread-safe. Streams are keyed by stream number (never reused); a removed camera's
counters are kept for the newest REMOVED_KEPT removed ones and older ones are folded into one
"removed cameras" total, so a site reloaded with new cameras for days stays bounded.

See docs/runtime.md.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

REMOVED_KEPT = 8  # removed cameras whose own counters stay in the stats; older ones are folded into one total
COUNTED = ("frames_read", "frames_dropped", "frames_sampled", "clips", "clips_skipped", "decisions", "reconnects",
           "reconnect_attempts", "outages")  # what the removed-cameras total adds up

STAGES = ("read", "capture_wait", "preprocess", "queue", "encode", "classify", "capture_to_decision")


class LatencyWindow:
    """The newest `size` durations (seconds) and the count and sum of all of them."""

    def __init__(self, size: int):
        self.samples: deque[float] = deque(maxlen=size)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self.samples.append(seconds)
        self.count += 1
        self.total += seconds

    def summary(self) -> dict[str, float]:
        if not self.samples:
            return {"n": self.count}
        ms = np.asarray(self.samples) * 1000.0
        p50, p95, p99 = np.percentile(ms, [50, 95, 99])
        return {"n": self.count, "mean_ms": round(1000.0 * self.total / self.count, 3), "p50_ms": round(float(p50), 3),
                "p95_ms": round(float(p95), 3), "p99_ms": round(float(p99), 3), "max_ms": round(float(ms.max()), 3)}


@dataclass
class StreamCounters:
    """What happened to one source's frames (each field written by one thread only)."""

    source: str
    kind: str
    fps: float = 0.0
    sampling: str = ""
    camera: str = ""
    frames_read: int = 0
    frames_dropped: int = 0  # replaced in the reader's slot before the assembler took them
    frames_sampled: int = 0
    clips: int = 0
    clips_skipped: int = 0  # a newer clip replaced one the encoder had not taken yet
    decisions: int = 0
    reconnects: int = 0  # connections made again after a drop
    reconnect_attempts: int = 0  # tries to connect again, failed ones included (they move during an outage)
    outages: int = 0  # times the stream went down
    up: bool = False  # frames are coming (a live source: connected and not silent past the read timeout)
    down_reason: str = ""  # why it is down now (the server's answer where it gave one), "" while up
    ended: str = ""  # why the stream stopped: "end of file", "stopped", or the error
    error: str = ""


class RunStats:
    """Stage latencies and stream counters of one run, as a dict or a printed table."""

    def __init__(self, window: int = 10_000, stream_window: int = 1_000):
        self._lock = threading.Lock()
        self.stages = {name: LatencyWindow(window) for name in STAGES}
        self.stream_window = stream_window
        self.stream_stages: dict[int, dict[str, LatencyWindow]] = {}  # per camera, for the metrics
        self.streams: dict[int, StreamCounters] = {}  # by stream number (a folded removed camera is not here)
        self.removed = StreamCounters("", "", camera="removed cameras")  # the folded ones' counters, added up
        self.removed_cameras = 0  # how many are folded into `removed`
        self._removed_order: list[int] = []  # removed streams still kept, oldest first
        self.started = time.monotonic()
        self.finished: float | None = None
        self.decisions = 0
        self.batches = 0
        self.info: dict[str, Any] = {}

    def record(self, stage: str, seconds: float, stream: int | None = None) -> None:
        with self._lock:
            self.stages[stage].add(seconds)
            if stream is not None:
                per = self.stream_stages.get(stream)
                if per is None:
                    per = self.stream_stages[stream] = {name: LatencyWindow(self.stream_window) for name in STAGES}
                per[stage].add(seconds)

    def add_stream(self, stream: int, counters: StreamCounters) -> None:
        with self._lock:
            self.streams[stream] = counters

    def stream_removed(self, stream: int, keep: int = REMOVED_KEPT) -> None:
        """Stream `stream`'s camera was removed: beyond the newest `keep` removed ones, the oldest is
        folded into `removed` (its counters added, its latency windows dropped). Called on the
        decision thread, so decisions add up; a reader still ending may count a last frame or two
        on the folded object, which is then not in the total."""
        with self._lock:
            self._removed_order.append(stream)
            while len(self._removed_order) > keep:
                old = self._removed_order.pop(0)
                s = self.streams.pop(old, None)
                self.stream_stages.pop(old, None)
                if s is not None:
                    for key in COUNTED:
                        setattr(self.removed, key, getattr(self.removed, key) + getattr(s, key))
                    self.removed_cameras += 1

    def stream_summaries(self) -> dict[int, dict[str, LatencyWindow]]:
        """A consistent copy of the per-stream windows (for a metrics scrape on another thread)."""
        with self._lock:
            out = {}
            for i, per in self.stream_stages.items():
                out[i] = {}
                for name, w in per.items():
                    c = LatencyWindow(self.stream_window)
                    c.samples.extend(w.samples)
                    c.count, c.total = w.count, w.total
                    out[i][name] = c
            return out

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            wall = (self.finished or time.monotonic()) - self.started
            return {
                **self.info,
                "wall_s": round(wall, 3),
                "decisions": self.decisions,
                "decisions_per_s": round(self.decisions / wall, 4) if wall > 0 else 0.0,
                "encoder_calls": self.batches,
                "stages": {name: w.summary() for name, w in self.stages.items()},
                "streams": [{"stream": i, **asdict(s)} for i, s in self.streams.items()],
                **({"removed_cameras": {"cameras": self.removed_cameras, **{k: getattr(self.removed, k) for k in COUNTED}}}
                   if self.removed_cameras else {}),
                "rss_mb": rss_mb(),
            }

    def table(self) -> str:
        """The human summary printed at the end of a run."""
        d = self.to_dict()
        lines = [f"{d['decisions']} decisions in {d['wall_s']:.1f} s ({d['decisions_per_s']:.2f}/s), "
                 f"backend {d.get('backend', '?')}, {d['encoder_calls']} encoder calls",
                 f"  {'stage':20s} {'n':>7s} {'p50 ms':>9s} {'p95 ms':>9s} {'p99 ms':>9s}"]
        for name, s in d["stages"].items():
            if s.get("n"):
                lines.append(f"  {name:20s} {s['n']:7d} {s['p50_ms']:9.2f} {s['p95_ms']:9.2f} {s['p99_ms']:9.2f}")
        for s in d["streams"]:
            i = s["stream"]
            name = f" ({s['camera']})" if s["camera"] and s["camera"] != s["source"] else ""
            lines.append(f"  stream {i} {s['source']}{name}: {s['frames_read']} frames read, {s['frames_sampled']} sampled, "
                         f"{s['frames_dropped']} dropped, {s['clips_skipped']} clips skipped, {s['decisions']} decisions, "
                         f"{s['reconnects']} reconnects" + (f" ({s['ended']})" if s["ended"] else "")
                         + (f"; down: {s['down_reason']}" if s["down_reason"] and not s["up"] else ""))
        if "removed_cameras" in d:
            r = d["removed_cameras"]
            lines.append(f"  {r['cameras']} more removed camera(s): {r['frames_read']} frames read, {r['frames_sampled']} "
                         f"sampled, {r['frames_dropped']} dropped, {r['clips_skipped']} clips skipped, {r['decisions']} "
                         f"decisions, {r['reconnects']} reconnects")
        return "\n".join(lines)


def rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux; None elsewhere)."""
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return round(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        return None
