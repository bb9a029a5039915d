"""`froster-edge bench`: each backend's encoder alone, and the whole pipeline, in one run.

Per backend, on the bundle's stream count: (1) encoder latency p50/p95 and throughput on real
clips, backends interleaved call by call; (2) pipeline decisions/s against the backend alone on
the same batches, interleaved `reps` times (the ratio is the runtime's overhead, 1.0 = none), and
the encoder's busy share; (3) with --realtime-check, the clip played at its own pace as a camera,
capture-to-decision p50 against the encoder's. No torch unless the torch backend is asked for.

See docs/benchmarks.md.
"""

from __future__ import annotations

import importlib.metadata
import logging
import math
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import manifest as mf
from ..errors import ConfigError, MissingCapability
from ..info import cpu_int8, cpu_name
from .assembly import SampleRule
from .backends import Opened, cuda_device, open_backend, probe
from .options import BENCH_ORDER, CaptureOptions, RunOptions, SamplingOptions
from .pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass
class BenchOptions:
    clip: Path
    backends: list[str] = field(default_factory=list)  # empty: every available one of BENCH_ORDER
    ov_device: str = "CPU"
    reps: int = 3  # pipeline / backend-alone pairs per backend
    latency_calls: int = 20  # encoder calls per backend for the latency percentiles
    hop: int = SamplingOptions().hop
    realtime_check: bool = True
    realtime_decisions: int = 8  # decisions of the real-time run (the clip loops as a camera would)
    realtime_headroom: float = 1.5  # the real-time run's clip interval is at least this many encoder latencies


def machine() -> dict[str, Any]:
    """CPU, GPU and versions, without importing torch."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    try:
        gpu = "{} (sm {})".format(*cuda_device())
    except (MissingCapability, Exception):  # no cuda-python, no driver, no GPU: all mean "none here"
        gpu = "none"
    ort = next((version(d) for d in ("onnxruntime-gpu", "onnxruntime") if version(d) != "not installed"), "not installed")
    return {"cpu": cpu_name(), "cpu_int8_dot_product": cpu_int8(), "cpu_cores": os.cpu_count(), "gpu": gpu, "platform": platform.platform(),
            "python": platform.python_version(), "froster-edge": version("froster-edge"), "onnxruntime": ort,
            "opencv": version("opencv-python-headless") if version("opencv-python-headless") != "not installed"
            else version("opencv-python"), "tensorrt": version("tensorrt"), "openvino": version("openvino"), "numpy": version("numpy"),
            "date": time.strftime("%Y-%m-%d")}


def _pipeline_options(clip: Path, streams: int, hop: int, realtime: bool, max_decisions: int | None = None) -> RunOptions:
    """The pipeline runs reuse an opened backend, so its name and device are not needed here."""
    return RunOptions(sources=[str(clip)] * streams, sampling=SamplingOptions(hop=hop), max_decisions=max_decisions,
                      capture=CaptureOptions(realtime=realtime, loop=realtime))


def keep_up_hop(encoder_s: float, sample_fps: float, headroom: float, hop: int) -> int:
    """The smallest hop (at least `hop`) whose clip interval, hop / sample_fps, gives the encoder
    `headroom` times its latency: the real-time check measures latency, not a backlog."""
    return max(hop, math.ceil(headroom * encoder_s * sample_fps - 1e-9))


def _run_pipeline(bundle: Path, opened: Opened, options: RunOptions, record: list | None = None) -> dict[str, Any]:
    pipeline = Pipeline(bundle, options, opened=opened)
    if record is not None:
        pipeline.on_batch = lambda batch: record.append(batch.copy())
    last: list[float] = []

    class LastDecision:
        def emit(self, decision) -> None:
            last.append(time.monotonic())

        def close(self) -> None:
            pass

    pipeline.sinks = [LastDecision()]
    stats = pipeline.run()
    out = stats.to_dict()
    if pipeline.errors():
        raise ConfigError("; ".join(pipeline.errors()))
    out["to_last_decision_s"] = (last[-1] - stats.started) if last else float("nan")
    return out


def _alone(backend, batches: list[np.ndarray]) -> float:
    """Seconds for the backend alone to run every batch once."""
    t = time.perf_counter()
    for b in batches:
        backend(b)
    return time.perf_counter() - t


def bench(bundle: str | Path, options: BenchOptions) -> dict[str, Any]:
    bundle = Path(bundle)
    manifest = mf.read_manifest(bundle)
    if not options.clip.is_file():
        raise ConfigError(f"--clip {options.clip}: no such video file")
    pre = manifest["preprocessing"]
    streams = int(pre["streams"])
    names = options.backends or list(BENCH_ORDER)
    rows: dict[str, dict[str, Any]] = {}
    opened: dict[str, Opened] = {}
    for name in names:
        reason = probe(name, bundle, manifest)
        if reason is None:
            try:
                opened[name] = open_backend(name, bundle, manifest, options.ov_device)
            except MissingCapability as e:
                reason = str(e)
        if reason is not None:
            rows[name] = {"available": False, "reason": reason}
            log.warning(f"bench: {name} unavailable: {reason}")
    if not opened:
        raise MissingCapability("no backend to benchmark: " + "; ".join(f"{k}: {v['reason']}" for k, v in rows.items()))

    log.info(f"bench: recording the clips of {options.clip.name} ({streams} stream(s), hop {options.hop})")
    batches: list[np.ndarray] = []
    first = next(iter(opened.values()))
    _run_pipeline(bundle, first, _pipeline_options(options.clip, streams, options.hop, False), batches)
    if not batches:
        raise ConfigError(f"{options.clip} is too short for one clip of {pre['num_frames']} sampled frames")

    log.info(f"bench: encoder latency, {options.latency_calls} calls per backend, interleaved")
    times: dict[str, list[float]] = {name: [] for name in opened}
    for i in range(options.latency_calls):
        batch = batches[i % len(batches)]
        for name, o in opened.items():
            t = time.perf_counter()
            o.backend(batch)
            times[name].append(time.perf_counter() - t)

    log.info(f"bench: pipeline vs backend alone, {options.reps} interleaved pairs per backend")
    runs: dict[str, list[tuple[float, float, float]]] = {name: [] for name in opened}
    for _ in range(options.reps):
        for name, o in opened.items():
            stats = _run_pipeline(bundle, o, _pipeline_options(options.clip, streams, options.hop, False))
            alone_s = _alone(o.backend, batches)
            encode = stats["stages"]["encode"]
            busy = encode["mean_ms"] * encode["n"] / 1000.0 / stats["to_last_decision_s"]
            runs[name].append((stats["decisions"] / stats["to_last_decision_s"], len(batches) * streams / alone_s, busy))

    for name, o in opened.items():
        ms = np.asarray(times[name]) * 1000.0
        rows[name] = {
            "available": True, "detail": o.backend.detail, "warmup_s": round(o.warmup_s, 3),
            "encoder_p50_ms": round(float(np.percentile(ms, 50)), 2), "encoder_p95_ms": round(float(np.percentile(ms, 95)), 2),
            "encoder_clips_per_s": round(streams * len(ms) / (ms.sum() / 1000.0), 3),
            "pipeline_decisions_per_s": round(statistics.median(r[0] for r in runs[name]), 3),
            "alone_decisions_per_s": round(statistics.median(r[1] for r in runs[name]), 3),
            "pipeline_vs_alone": round(statistics.median(r[0] / r[1] for r in runs[name]), 4),  # pairs adjacent in time
            "encoder_busy": round(statistics.median(r[2] for r in runs[name]), 4),
            "pairs": [{"pipeline": round(p, 3), "alone": round(a, 3), "ratio": round(p / a, 4), "encoder_busy": round(b, 4)}
                      for p, a, b in runs[name]],
        }
    if options.realtime_check:
        rule = SampleRule.from_options(SamplingOptions(), pre)
        sample_fps = rule.sampled_per_second(rule.spec.reference_fps)
        for name, o in opened.items():
            row = rows[name]
            hop = keep_up_hop(row["encoder_p50_ms"] / 1000.0, sample_fps, options.realtime_headroom, options.hop)
            log.info(f"bench: {name}: the clip at its own pace as a camera, hop {hop}, capture-to-decision")
            stats = _run_pipeline(bundle, o, _pipeline_options(options.clip, streams, hop, True, options.realtime_decisions))
            c2d, queue = stats["stages"]["capture_to_decision"], stats["stages"]["queue"]
            row["realtime"] = {"hop": hop, "clip_interval_s": round(hop / sample_fps, 3), "decisions": stats["decisions"],
                               "clips_skipped": sum(s["clips_skipped"] for s in stats["streams"]),
                               "capture_to_decision_p50_ms": c2d.get("p50_ms"), "capture_to_decision_p95_ms": c2d.get("p95_ms"),
                               "queue_p50_ms": queue.get("p50_ms"), "encode_p50_ms_in_run": stats["stages"]["encode"].get("p50_ms")}
            if c2d.get("p50_ms"):
                row["realtime"]["c2d_p50_vs_encoder_p50"] = round(c2d["p50_ms"] / row["encoder_p50_ms"], 4)
                row["realtime"]["c2d_p50_vs_encode_p50_in_run"] = round(c2d["p50_ms"] / stats["stages"]["encode"]["p50_ms"], 4)
    for o in opened.values():
        o.backend.close()
    return {"machine": machine(), "bundle": str(bundle), "clip": str(options.clip),
            "model": {k: manifest["model"]["student"].get(k) for k in ("model_name", "num_frames", "image_size")},
            "streams": streams, "hop": options.hop, "clips_per_pipeline_run": len(batches) * streams,
            "backends": rows}


def table(result: dict[str, Any]) -> str:
    """The printed form of bench's result."""
    m = result["machine"]
    lines = [f"machine: {m['cpu']} ({m['cpu_cores']} cores; int8 dot product {m['cpu_int8_dot_product']}), GPU {m['gpu']}; python {m['python']}, onnxruntime "
             f"{m['onnxruntime']}, opencv {m['opencv']}, tensorrt {m['tensorrt']}, openvino {m.get('openvino', '-')}, froster-edge {m['froster-edge']}",
             f"bundle: {result['bundle']} {result['model']}, {result['streams']} stream(s) per call, hop {result['hop']}, "
             f"clip {Path(result['clip']).name} ({result['clips_per_pipeline_run']} clips per pipeline run)",
             f"{'backend':12s} {'enc p50':>9s} {'enc p95':>9s} {'clips/s':>8s} {'pipe dec/s':>11s} {'alone dec/s':>12s} "
             f"{'pipe/alone':>10s} {'busy':>6s} {'rt hop':>6s} {'c2d p50':>9s} {'c2d/enc':>8s}"]
    # c2d/enc: capture-to-decision p50 over the encoder's p50 in the same real-time run (the JSON also
    # has it over the interleaved encoder p50 of step 1, measured minutes apart)
    for name, r in result["backends"].items():
        if not r["available"]:
            lines.append(f"{name:12s} unavailable: {r['reason']}")
            continue
        rt = r.get("realtime", {})
        c2d = f"{rt['capture_to_decision_p50_ms']:9.1f}" if rt.get("capture_to_decision_p50_ms") else f"{'-':>9s}"
        ratio = f"{rt['c2d_p50_vs_encode_p50_in_run']:8.3f}" if rt.get("c2d_p50_vs_encode_p50_in_run") else f"{'-':>8s}"
        hop = f"{rt['hop']:6d}" if rt else f"{'-':>6s}"
        lines.append(f"{name:12s} {r['encoder_p50_ms']:9.1f} {r['encoder_p95_ms']:9.1f} {r['encoder_clips_per_s']:8.2f} "
                     f"{r['pipeline_decisions_per_s']:11.3f} {r['alone_decisions_per_s']:12.3f} {r['pipeline_vs_alone']:10.3f} "
                     f"{r['encoder_busy']:6.3f} {hop} {c2d} {ratio}")
    return "\n".join(lines)
