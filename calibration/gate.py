"""The INT8 gate: keep a quantized model only where it measurably pays and still agrees.

On held-out clips (never the calibration clips) it measures the cosine of each INT8 embedding to
the float one, top-1 agreement on the label table, and the speed-up over the float model, timed
in one run with calls interleaved so that machine noise hits all candidates alike.

See docs/calibration.md.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable

import numpy as np

from ..bundle.labels import LabelTable
from ..bundle.parity import compare, cosines, run_in_streams
from .options import GateThresholds

Encoder = Callable[[np.ndarray], np.ndarray]


def interleaved_median_ms(calls: dict[str, Callable[[], object]], reps: int,
                          sync: Callable[[], None] = lambda: None) -> dict[str, float]:
    """Median latency of each call after one warm-up each, calls interleaved so machine noise hits all alike.

    `sync` waits for asynchronous work (torch.cuda.synchronize) before each clock read.
    """
    for call in calls.values():
        call()
        sync()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):
        for name, call in calls.items():
            sync()
            t = time.perf_counter()
            call()
            sync()
            times[name].append(time.perf_counter() - t)
    return {k: 1000 * statistics.median(v) for k, v in times.items()}


def fidelity(got: np.ndarray, ref: np.ndarray, table: LabelTable) -> dict:
    """How closely INT8 embeddings follow the float ones: min/mean cosine, top-1 agreement on `table`."""
    stats = compare(got, ref, table)
    cos = cosines(got, ref)
    return {"held_out_clips": int(len(ref)), "min_cosine": stats["min_cosine"], "mean_cosine": float(cos.mean()),
            "top1_agreement": stats["top1_agreement"]}


def measure_candidates(float_encoder: Encoder, int8_encoders: dict[str, Encoder], held_out: np.ndarray, streams: int,
                       table: LabelTable, reps: int = 5) -> dict[str, dict]:
    """Each INT8 model's agreement with float on held-out clips, and its speed, all timed interleaved in one run."""
    ref = run_in_streams(float_encoder, held_out, streams)
    figures = {name: fidelity(run_in_streams(enc, held_out, streams), ref, table) for name, enc in int8_encoders.items()}
    batch = held_out[:streams] if len(held_out) >= streams else np.repeat(held_out[:1], streams, axis=0)
    calls = {"float": lambda: float_encoder(batch), **{n: (lambda e=e: e(batch)) for n, e in int8_encoders.items()}}
    ms = interleaved_median_ms(calls, reps)
    for name, f in figures.items():
        f.update(float_ms=round(ms["float"], 2), int8_ms=round(ms[name], 2), speedup=round(ms["float"] / ms[name], 3))
    return figures


def measure(float_encoder: Encoder, int8_encoder: Encoder, held_out: np.ndarray, streams: int, table: LabelTable,
            reps: int = 5) -> dict:
    """Agreement and speed of one INT8 model against float on held-out clips."""
    return measure_candidates(float_encoder, {"int8": int8_encoder}, held_out, streams, table, reps)["int8"]


def decide(figures: dict, thresholds: GateThresholds, force: bool = False) -> tuple[bool, list[str]]:
    """(accepted, reasons it failed); `force` accepts anyway but still lists the reasons."""
    reasons = []
    bad = [k for k in ("top1_agreement", "min_cosine", "speedup") if not np.isfinite(figures[k])]
    if bad:  # NaN compares False with every threshold: a model that outputs NaN must not pass by it
        reasons.append(f"{', '.join(bad)} not a number (the model's outputs are not finite)")
    if figures["top1_agreement"] < thresholds.min_top1_agreement:
        reasons.append(f"top-1 agreement {figures['top1_agreement']:.1%} < {thresholds.min_top1_agreement:.0%}")
    if figures["min_cosine"] < thresholds.min_cosine:
        reasons.append(f"min cosine {figures['min_cosine']:.4f} < {thresholds.min_cosine:g}")
    if figures["speedup"] < thresholds.min_speedup:
        reasons.append(f"speed-up {figures['speedup']:.2f}x < {thresholds.min_speedup:.2f}x")
    return (not reasons) or force, reasons
