"""Runtime options: the one place their defaults live (no torch, no cv2: the CLI reads them fast).

Sampling follows the bundle's sampling spec (froster_edge.sampling). A decision is made every `hop`
sampled frames once T are buffered, so with the default hop of 2 each clip shares T - 2 of its
frames with the one before.

See docs/runtime.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from .source_url import redact

BackendName = Literal["auto", "trt-int8", "trt", "ort-trt", "ort-cuda", "ort-cpu-int8", "ort-cpu", "ov-int8", "ov", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "trt-int8", "trt", "ort-trt", "ort-cuda", "ort-cpu-int8", "ort-cpu", "ov-int8", "ov", "torch")
# fastest first; the int8 ones exist only where `froster-edge calibrate` kept an INT8 model that passed its gate.
# The CPU slot (ort-cpu-int8) goes to the backend of the model calibrate kept: ort-cpu-int8, ov-int8 or ov
# (runtime.backends.auto_order).
AUTO_ORDER: tuple[str, ...] = ("trt-int8", "trt", "ort-trt", "ort-cuda", "ort-cpu-int8", "ort-cpu")
# what `bench` measures by default: every backend that can run here but torch
BENCH_ORDER: tuple[str, ...] = AUTO_ORDER + ("ov-int8", "ov")
OV_DEVICES: tuple[str, ...] = ("CPU", "GPU", "NPU", "AUTO")  # --ov-device (bundle.ov_sessions.DEVICES)
Smoothing = Literal["ema", "mean", "none"]
MAX_CAMERA_INDEX = 1023  # a camera given by number (OpenCV's index); larger numbers are not devices


def camera_index(text: str) -> int | None:
    """A source written as a number: the camera index it names (None: not a number); a number no
    device can have is a ConfigError, not an overflow inside OpenCV."""
    from ..errors import ConfigError, shorten

    s = text.strip()
    if not (s.isascii() and s.isdigit()):
        return None
    if len(s) > 4 or int(s) > MAX_CAMERA_INDEX:
        raise ConfigError(f"source: a camera index must be in 0..{MAX_CAMERA_INDEX}, not {shorten(s, 24)}")
    return int(s)


@dataclass(frozen=True)
class SamplingOptions:
    """Which source frames enter a clip, and how often a clip is classified.

    fps: sampled frames per second of video (None: the bundle's sampling spec, as in training).
    subsample: take every Nth source frame instead (files by index, live sources by their fps).
    hop: sampled frames between two decisions (1 = a decision on every sampled frame).
    """

    fps: float | None = None
    subsample: int | None = None
    hop: int = 2


@dataclass(frozen=True)
class CaptureOptions:
    """Reader threads: pacing of files, reconnection of cameras and streams."""

    realtime: bool = False  # play files at their native pace, as a camera would deliver them
    loop: bool = False  # start a file again at its end (a camera that never ends)
    reconnect_initial_s: float = 0.5  # first wait after a camera or stream drops; doubles each failure
    reconnect_max_s: float = 5.0
    open_timeout_s: float = 10.0  # network streams: give up one connection attempt after this
    read_timeout_s: float = 5.0  # network streams: a stream silent this long counts as dropped
    fallback_fps: float = 30.0  # for a source that does not report its frame rate


@dataclass(frozen=True)
class ClassifierOptions:
    """Scores: softmax over the table, smoothing over a stream's recent decisions, threshold, top-k."""

    top_k: int = 3
    threshold: float = 0.0  # below this smoothed top-1 score the outcome is "unknown"
    smoothing: Smoothing = "ema"
    ema_alpha: float = 0.5  # weight of the newest decision in the EMA
    window: int = 3  # decisions averaged by the moving mean
    unknown_label: str = "unknown"


@dataclass(frozen=True)
class CameraOptions:
    """One named camera of a site: its source and what it overrides of the run's options.

    None keeps the run's value. `labels` restricts the camera to those classes of its table
    (softmax over them only); `table` gives it a label table of its own (watched like --labels).
    `source` is the URL as written (a password in it is shown nowhere: see runtime/source_url.py).
    """

    name: str
    source: str
    sampling: SamplingOptions | None = None
    realtime: bool | None = None
    loop: bool | None = None
    threshold: float | None = None
    labels: tuple[str, ...] | None = None
    table: Path | None = None
    password_env: str | None = None  # the source's password from this environment variable...
    password_file: Path | None = None  # ...or from this file's first line (never in the URL on a command line)
    rtsp_transport: Literal["tcp", "udp"] | None = None  # rtsp:// only; None: OpenCV's default (TCP)


@dataclass
class RunOptions:
    """Everything `froster-edge run` can change; the CLI's defaults come from here."""

    sources: list[str] = field(default_factory=list)  # unnamed cameras (each named by its source)
    cameras: list[CameraOptions] = field(default_factory=list)  # named ones (a site file)
    labels: Path | None = None  # None: the bundle's own labels.npz
    backend: str = "auto"
    ov_device: str = "CPU"  # the OpenVINO device of the ov backends
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    capture: CaptureOptions = field(default_factory=CaptureOptions)
    classifier: ClassifierOptions = field(default_factory=ClassifierOptions)
    max_decisions: int | None = None  # stop after this many decisions in all (benchmarks, tests)
    label_poll_s: float = 0.2  # how often the label file is checked for a new table
    stats_window: int = 10_000  # latency percentiles cover the newest this many samples per stage


RUN_DEFAULTS = RunOptions()


def camera_list(options: RunOptions) -> list[CameraOptions]:
    """The run's cameras: the named ones, then one per --source named by its text (a URL's
    password replaced by ***: the name shows in logs, files, metrics and topics)."""
    return [*options.cameras, *(CameraOptions(name=redact(s.strip()), source=s) for s in options.sources)]


def check_options(options: RunOptions) -> None:
    """Refuse values that cannot work, with the option named (the CLI checks ranges too)."""
    from ..errors import ConfigError

    s, c = options.sampling, options.classifier
    names = [cam.name for cam in options.cameras] + [n for n in map(redact, options.sources) if n in {c.name for c in options.cameras}]
    twice = sorted({n for n in names if names.count(n) > 1})
    problems = [
        (not options.sources and not options.cameras, "give at least one --source"),
        (bool(twice), f"camera name {', '.join(twice)} given twice (each camera needs its own name)"),
        (options.backend not in BACKENDS, f"--backend must be one of {', '.join(BACKENDS)}, not {options.backend!r}"),
        (options.ov_device not in OV_DEVICES, f"--ov-device must be one of {', '.join(OV_DEVICES)}, not {options.ov_device!r}"),
        *sampling_problems(s, "--"),
        (not 0.0 <= c.threshold <= 1.0, f"--threshold is a probability in [0, 1], not {c.threshold}"),
        (c.smoothing not in ("ema", "mean", "none"), f"--smoothing must be ema, mean or none, not {c.smoothing!r}"),
        (not 0.0 < c.ema_alpha <= 1.0, f"--ema-alpha must be in (0, 1], not {c.ema_alpha}"),
        (c.window < 1, f"--window must be at least 1, not {c.window}"),
        (c.top_k < 1, f"--top-k must be at least 1, not {c.top_k}"),
    ]
    for cam in options.cameras:
        where = f"cameras[{cam.name}]."
        problems += sampling_problems(cam.sampling, where) if cam.sampling is not None else []
        problems.append((cam.threshold is not None and not 0.0 <= cam.threshold <= 1.0,
                         f"{where}threshold is a probability in [0, 1], not {cam.threshold}"))
    for bad, message in problems:
        if bad:
            raise ConfigError(message)


def sampling_problems(s: SamplingOptions, prefix: str) -> list[tuple[bool, str]]:
    """(bad, message) pairs for one sampling setting; `prefix` names where it came from."""
    return [
        (s.fps is not None and s.subsample is not None, f"give {prefix}sample-fps or {prefix}subsample, not both"),
        (s.fps is not None and not s.fps > 0, f"{prefix}sample-fps must be positive, not {s.fps}"),
        (s.subsample is not None and s.subsample < 1, f"{prefix}subsample must be at least 1, not {s.subsample}"),
        (s.hop < 1, f"{prefix}hop must be at least 1, not {s.hop}"),
    ]
