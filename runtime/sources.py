"""Capture: parse a --source, open it, and read it on its own thread into a one-frame slot.

A camera or network stream is live: its reader stamps capture time and keeps only the newest frame,
counting those never taken as dropped, and reopens a dropped source with exponential backoff. A
file is read sequentially; without --realtime nothing is dropped (the slot's `put` waits), with it
the file is paced at its frame rate like a camera. A file that cannot open is an error at start;
one that stops early ends its stream with that error. --loop restarts a file at its end.

See docs/cameras.md.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import numpy as np

from ..errors import ConfigError, FrosterError
from ..opencv import cv2
from ..video import MAX_FRAMES, VideoError, check_early_stop  # noqa: F401
from .options import CaptureOptions, camera_index
from .source_url import redact, scrub, secrets_of, with_camera_options
from .stats import RunStats, StreamCounters

log = logging.getLogger(__name__)

cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # OpenCV's own warnings, e.g. on a missing camera

SourceKind = Literal["camera", "file", "url"]
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt")


class SourceError(FrosterError):
    """A source that cannot be opened or read."""


RtspTransport = Literal["tcp", "udp"]


@dataclass(frozen=True)
class SourceSpec:
    """A parsed --source: what it is and what OpenCV opens.

    `text` is what may be shown (a URL's password replaced by ***); `target` is what opens the
    stream, with the password: it is read by open_capture and the fault probe only, and kept out
    of repr(). `scrub` hides the password in a message another library wrote."""

    text: str
    kind: SourceKind
    target: int | str = field(repr=False)  # camera index, or a path / URL (with its credentials)
    transport: RtspTransport | None = None  # rtsp:// only: None keeps OpenCV's (TCP)

    @property
    def live(self) -> bool:
        return self.kind != "file"

    def scrub(self, message: str) -> str:
        return scrub(message, secrets_of(self.target) if isinstance(self.target, str) else ())


def parse_source(text: str, password: str | None = None, transport: RtspTransport | None = None,
                 where: str = "--source") -> SourceSpec:
    """A camera index ("0"), a camera device ("/dev/video0"), a URL, or an existing video file.
    `password` (from a site file's password_env/password_file) goes into the URL, whose user it needs."""
    s = with_camera_options(text, password, transport, where).strip()
    index = camera_index(s)
    if index is not None:
        return SourceSpec(s, "camera", index)
    if s.startswith("/dev/video"):
        return SourceSpec(s, "camera", s)
    if "://" in s:
        scheme = s.split("://", 1)[0].lower()
        if scheme not in URL_SCHEMES:
            raise ConfigError(f"--source {redact(s)}: unsupported scheme {scheme!r} (use one of {', '.join(URL_SCHEMES)}, "
                              "a camera index or a video file)")
        return SourceSpec(redact(s), "url", s, transport)
    path = Path(s)
    if not path.is_file():
        raise ConfigError(f"--source {s}: no such video file (a camera is a number, a stream a URL)")
    return SourceSpec(s, "file", str(path))


CAPTURE_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # FFmpeg options OpenCV reads at each open ("k;v|k;v")


class _CaptureOptionsEnv:
    """OpenCV takes FFmpeg's demuxer options (rtsp_transport) only from one process-wide
    environment variable, read when a capture opens. Opens that need the same value run together;
    an open that needs another value waits until they are done. The value the user set before the
    run is the base every camera's transport is added to."""

    def __init__(self) -> None:
        self.base = os.environ.get(CAPTURE_OPTIONS_ENV)
        self._cond = threading.Condition()
        self._value: str | None = None
        self._holders = 0

    def value_for(self, transport: str | None) -> str | None:
        if transport is None:
            return self.base
        kept = [kv for kv in (self.base or "").split("|") if kv and kv.split(";", 1)[0] != "rtsp_transport"]
        return "|".join([*kept, f"rtsp_transport;{transport}"])

    @contextmanager
    def holding(self, transport: str | None) -> Iterator[None]:
        value = self.value_for(transport)
        with self._cond:
            while self._holders and self._value != value:
                self._cond.wait()
            if self._holders == 0:
                self._value = value
                if os.environ.get(CAPTURE_OPTIONS_ENV) != value:  # written only on a change (setenv is not free)
                    if value is None:
                        os.environ.pop(CAPTURE_OPTIONS_ENV, None)
                    else:
                        os.environ[CAPTURE_OPTIONS_ENV] = value
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                self._cond.notify_all()


_CAPTURE_ENV = _CaptureOptionsEnv()


def open_capture(spec: SourceSpec, options: CaptureOptions) -> cv2.VideoCapture | None:
    """An opened VideoCapture, or None. Network streams get open/read timeouts so a dead server
    cannot block a reader for FFmpeg's default 30 s, and an rtsp:// camera its transport."""
    if spec.kind == "camera":
        cap = cv2.VideoCapture(spec.target)
    else:
        params = [cv2.CAP_PROP_N_THREADS, 1] if spec.kind == "file" else [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(options.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(options.read_timeout_s * 1000)]
        with _CAPTURE_ENV.holding(spec.transport):
            cap = cv2.VideoCapture(str(spec.target), cv2.CAP_FFMPEG, params)
    if not cap.isOpened():
        cap.release()
        return None
    return cap


def why_not_opened(spec: SourceSpec, options: CaptureOptions) -> str:
    """Why `spec` did not open, in words: a stream's server is asked (runtime/probe.py)."""
    if spec.kind == "camera":
        return "no such device, no permission, or busy"
    if spec.kind == "file":
        return "corrupt, or a codec OpenCV lacks"
    from .probe import diagnose

    return spec.scrub(str(diagnose(str(spec.target), min(options.open_timeout_s, 5.0))))


def open_first(spec: SourceSpec, options: CaptureOptions) -> cv2.VideoCapture:
    """Open a source at start, or fail with one line naming why: a run never starts on a source it cannot read."""
    cap = open_capture(spec, options)
    if cap is None:
        why = why_not_opened(spec, options)
        what = {"camera": f"camera {spec.text} cannot be opened ({why})",
                "url": f"stream {spec.text} cannot be opened: {why}",
                "file": f"{spec.text} cannot be opened as a video ({why})"}[spec.kind]
        raise SourceError(what)
    return cap


def open_all(sources: list[tuple[SourceSpec, CaptureOptions]], stop: threading.Event) -> list[cv2.VideoCapture] | None:
    """Open every source (all or none: a run never starts on a source it cannot read) on a helper
    thread, so a stop (a signal) while a stream is still connecting is honoured at once: None then,
    and what the helper opens afterwards it releases itself."""
    lock, done = threading.Lock(), threading.Event()
    state: dict = {"caps": [], "error": None, "abandoned": False}

    def work() -> None:
        try:
            for spec, options in sources:
                if stop.is_set():
                    break
                state["caps"].append(open_first(spec, options))
        except BaseException as e:  # handed to the waiting thread
            state["error"] = e
        with lock:
            done.set()
            if state["abandoned"] or state["error"] is not None:
                for cap in state["caps"]:
                    cap.release()

    threading.Thread(target=work, name="open-sources", daemon=True).start()
    while not done.wait(0.05):
        if stop.is_set():
            with lock:
                if not done.is_set():
                    state["abandoned"] = True
                    return None
    if state["error"] is not None:
        raise state["error"]
    if stop.is_set():
        for cap in state["caps"]:
            cap.release()
        return None
    return state["caps"]


def capture_fps(cap: cv2.VideoCapture) -> float:
    fps = cap.get(cv2.CAP_PROP_FPS)
    return float(fps) if 0 < fps < 1000 else 0.0


def declared_frames(cap: cv2.VideoCapture) -> int:
    """The container's frame count, 0 when absent or absurd (raw streams report about -1.9e14)."""
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(count) if 0 < count < MAX_FRAMES else 0


@dataclass
class Frame:
    """One captured frame. `position` drives sampling: the frame index (files read as fast as
    possible) or seconds since the stream started (live sources and --realtime files)."""

    index: int
    position: float
    media_time: float  # seconds into the video (files), since the stream started (live)
    captured: float  # time.monotonic() when the reader got it
    wall: float  # time.time() at the same moment
    image: np.ndarray | None  # RGB uint8 (H, W, 3); None when the reader skipped converting it
    segment: int = 0  # counts reconnections: frames of different segments never share a clip


END = object()  # put into a slot when its source has ended


class FrameSlot:
    """A one-item mailbox between a producer and a consumer thread.

    keep_newest: `put` never waits; an item the consumer has not taken is replaced and counted
    in `dropped`. Otherwise `put` waits until the consumer took the previous item (nothing lost).
    """

    def __init__(self, keep_newest: bool):
        self.keep_newest = keep_newest
        self.dropped = 0
        self._item: object | None = None
        self._cond = threading.Condition()

    def put(self, item: object, stop: threading.Event) -> bool:
        """False when the run stopped before the item could be handed over."""
        with self._cond:
            if self._item is not None and item is not END:
                if self.keep_newest:
                    self.dropped += 1
                else:
                    while self._item is not None and not stop.is_set():
                        self._cond.wait(0.1)
                    if stop.is_set():
                        return False
            if item is END and self._item is not None:
                while self._item is not None and not stop.is_set():  # let the last frame be taken first
                    self._cond.wait(0.1)
            self._item = item
            self._cond.notify_all()
            return True

    def take(self, timeout: float) -> object | None:
        """The item (or END), or None after `timeout` seconds without one."""
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            if item is not None:
                self._cond.notify_all()
            return item


class Reader(threading.Thread):
    """One source's reader thread: frames into `slot` until the source ends or `stop` is set.

    `want(position)` (the frame index for files, --realtime ones too; seconds since the start for
    cameras and streams) says which frames anyone will use; the others are decoded (they must be, to reach the next) but neither converted to RGB nor
    handed on. None: every frame is (frame sinks draw them all).
    """

    def __init__(self, spec: SourceSpec, cap: cv2.VideoCapture, slot: FrameSlot, stop: threading.Event,
                 options: CaptureOptions, stats: RunStats, counters: StreamCounters,
                 want: Callable[[float], bool] | None = None, name: str = "stream",
                 stream: int | None = None, on_state: Callable[[bool, str], None] | None = None,
                 respec: Callable[[], SourceSpec] | None = None):
        super().__init__(name=f"reader-{name}", daemon=True)  # daemon: a read stuck in FFmpeg cannot hang the exit
        self.spec, self.cap, self.slot, self.stop = spec, cap, slot, stop
        self.options, self.stats, self.counters, self.want = options, stats, counters, want
        self.label = name
        self.stream = stream  # the stream number its latencies are recorded under
        self.fps = capture_fps(cap) or options.fallback_fps
        self.on_state = on_state  # (up, why) on every change of the stream's state: sinks show a camera down
        self.respec = respec  # the source parsed again before each reconnection (a password file changed)
        counters.up = True

    def _state(self, up: bool, why: str = "") -> None:
        """Up or down (with why), said to the counters and `on_state` when it changes."""
        c = self.counters
        if c.up == up and c.down_reason == why:
            return
        c.outages += int(c.up and not up)
        c.up, c.down_reason = up, why
        if self.on_state is not None:
            self.on_state(up, why)

    def run(self) -> None:
        try:
            if self.spec.live:
                self._read_live()
            else:
                self._read_file()
        except FrosterError as e:
            self.counters.error = self.spec.scrub(str(e))
        except Exception as e:  # a bug: end this stream and say so, never hang the run
            self.counters.error = self.spec.scrub(f"internal error in the reader: {type(e).__name__}: {e}")
        finally:
            if self.cap is not None:
                self.cap.release()
            self.counters.ended = self.counters.error or self.counters.ended or ("stopped" if self.stop.is_set() else "end of file")
            self.counters.up = False
            self.counters.frames_dropped = self.slot.dropped
            self.slot.put(END, self.stop)

    def _read_file(self) -> None:
        """Sequential decode; --realtime paces frames at the file's fps; --loop reopens at the end."""
        realtime, base, start = self.options.realtime, 0, time.monotonic()
        while not self.stop.is_set():
            declared = declared_frames(self.cap)
            count = self._read_file_once(base, start, realtime)
            if self.stop.is_set():
                return
            if count == 0:
                raise SourceError(f"{self.spec.text}: no frame could be decoded (empty, corrupt, or an unsupported codec)")
            try:  # predict's rule: a short header count is no corruption, corrupt data is named
                check_early_stop(self.spec.target, count, declared)
            except VideoError as e:
                raise SourceError(f"{self.spec.text}: {e.reason}") from e
            if not self.options.loop:
                return
            self.cap.release()
            self.cap = open_first(self.spec, self.options)
            base += count

    def _read_file_once(self, base: int, start: float, realtime: bool) -> int:
        count = 0
        try:
            while not self.stop.is_set():
                t0 = time.monotonic()
                if not self.cap.grab():
                    break
                decode = time.monotonic() - t0
                index = base + count
                media_time = index / self.fps
                if realtime:
                    delay = start + media_time - time.monotonic()
                    if delay > 0 and self.stop.wait(delay):
                        break
                now = time.monotonic()
                image = None
                if self.want is None or self.want(float(index)):
                    t1 = time.monotonic()
                    ok, bgr = self.cap.retrieve()
                    if not ok:
                        break
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                    decode += time.monotonic() - t1
                self.stats.record("read", decode, self.stream)
                count += 1
                self.counters.frames_read += 1
                if image is not None:
                    position = media_time if realtime else float(index)  # a file's frames carry their media time
                    self.slot.put(Frame(index, position, media_time, now, time.time(), image), self.stop)
        except cv2.error as e:
            raise SourceError(self.spec.scrub(f"{self.spec.text}: OpenCV failed after {count} frames ({e.msg or e})")) from e
        return count

    def _read_live(self) -> None:
        """Read as the source delivers; on a drop, release and reopen with backoff. Every frame is
        decoded (grab); only those `want` takes by capture time are converted to RGB (retrieve)
        and handed on: the others cost no colour conversion and no copy."""
        opts, index, start, backoff = self.options, 0, time.monotonic(), self.options.reconnect_initial_s
        segment, pace = 0, _Pace(self.fps)
        while not self.stop.is_set():
            if self.cap is None:
                self.counters.reconnect_attempts += 1
                if self.respec is not None:
                    try:
                        self.spec = self.respec()
                    except FrosterError as e:  # the password file unreadable for now: the old one is tried
                        log.warning(f"stream {self.label}: {e}")
                self.cap = open_capture(self.spec, opts)
                if self.cap is None:
                    if self.stop.is_set():
                        return
                    why = why_not_opened(self.spec, opts)
                    if why != self.counters.down_reason:  # said once per cause, not once per retry
                        log.warning(f"stream {self.label}: {self.spec.text} unreachable: {why}; retrying every "
                                 f"{backoff:.1f} s up to {opts.reconnect_max_s:g} s")
                    self._state(False, why)
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, opts.reconnect_max_s)
                    continue
                self.counters.reconnects += 1
                segment += 1
                pace = _Pace(capture_fps(self.cap) or self.fps)
                log.info(f"stream {self.label}: reconnected to {self.spec.text}")
                self._state(True)
            t0 = time.monotonic()
            ok, bgr, silent = self._grab_live(start)
            if not ok:
                if self.stop.is_set():
                    return
                if self.spec.kind == "url" and pace.faster_than_real_time():
                    raise SourceError(
                        f"{self.spec.text} delivered {pace.media:.0f} s of video in {pace.wall:.1f} s and ended: it is a "
                        "video file served over the network, not a live stream, so its frames were dropped as live "
                        "ones; download it and give the file to --source")
                why = (f"no frame for {opts.read_timeout_s:g} s (the read timeout)" if silent
                       else "the stream ended or its connection broke")
                log.warning(f"stream {self.label}: {self.spec.text} dropped, reconnecting in {backoff:.1f} s: {why}")
                self._state(False, why)
                self.cap.release()
                self.cap = None
                self.stop.wait(backoff)
                backoff = min(backoff * 2, opts.reconnect_max_s)
                continue
            now = time.monotonic()
            pace.frame(now)
            backoff = opts.reconnect_initial_s
            self.stats.record("read", now - t0, self.stream)
            self.counters.frames_read += 1
            if bgr is not None:
                frame = Frame(index, now - start, now - start, now, time.time(), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), segment)
                self.slot.put(frame, self.stop)
            index += 1
            self.counters.frames_dropped = self.slot.dropped

    def _grab_live(self, start: float) -> tuple[bool, np.ndarray | None, bool]:
        """(decoded, BGR image or None when `want` skips the frame, silent).

        A grab that ran into the read timeout is the end of the connection, even when it returns
        a frame: OpenCV's FFmpeg reader, interrupted, hands out the decoder's buffered frames first
        (two more timeouts), so a silent stream would be noticed only after three read timeouts."""
        limit = self.options.read_timeout_s
        try:
            t0 = time.monotonic()
            if not self.cap.grab():
                return False, None, time.monotonic() - t0 >= limit
            if time.monotonic() - t0 >= limit:
                return False, None, True
            if self.want is not None and not self.want(time.monotonic() - start):
                return True, None, False
            ok, bgr = self.cap.retrieve()
        except cv2.error:
            return False, None, False
        return (True, bgr, False) if ok and bgr is not None else (False, None, False)

class _Pace:
    """How much video a connection delivered (frames over the frame rate it reports) against the
    wall time it took. A live stream delivers about real time; a video file behind an http:// URL
    arrives as fast as the network allows. Counting frames, not timestamps, keeps a live stream's
    timestamp jumps from looking fast."""

    def __init__(self, fps: float = 30.0) -> None:
        self.fps, self.frames, self._t0 = fps, 0, 0.0
        self.media = self.wall = 0.0

    def frame(self, now: float) -> None:
        if self.frames == 0:
            self._t0 = now
        self.frames += 1
        self.media, self.wall = (self.frames - 1) / self.fps, now - self._t0

    def faster_than_real_time(self) -> bool:
        return self.media > 2.0 * self.wall + 2.0  # far from a live stream's jitter and start-up burst
