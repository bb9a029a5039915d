"""The INT8 gate: keep a quantized model only where it measurably pays and still agrees.

On held-out clips (never the calibration clips) it measures the cosine of each INT8 embedding
to the float one, how often both pick the same top-1 class of the label table, and the speed-up
over the float model, timed here, in one run, calls interleaved so machine noise hits both alike.
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


def measure(float_encoder: Encoder, int8_encoder: Encoder, held_out: np.ndarray, streams: int, table: LabelTable,
            reps: int = 5) -> dict:
    """Agreement and speed of INT8 against float on held-out clips."""
    ref = run_in_streams(float_encoder, held_out, streams)
    got = run_in_streams(int8_encoder, held_out, streams)
    stats = compare(got, ref, table)
    cos = cosines(got, ref)
    batch = held_out[:streams] if len(held_out) >= streams else np.repeat(held_out[:1], streams, axis=0)
    ms = interleaved_median_ms({"float": lambda: float_encoder(batch), "int8": lambda: int8_encoder(batch)}, reps)
    return {"held_out_clips": int(len(held_out)), "min_cosine": stats["min_cosine"], "mean_cosine": float(cos.mean()),
            "top1_agreement": stats["top1_agreement"], "float_ms": round(ms["float"], 2), "int8_ms": round(ms["int8"], 2),
            "speedup": round(ms["float"] / ms["int8"], 3)}


def decide(figures: dict, thresholds: GateThresholds, force: bool = False) -> tuple[bool, list[str]]:
    """(accepted, reasons it failed); `force` accepts anyway but still lists the reasons."""
    reasons = []
    if figures["top1_agreement"] < thresholds.min_top1_agreement:
        reasons.append(f"top-1 agreement {figures['top1_agreement']:.1%} < {thresholds.min_top1_agreement:.0%}")
    if figures["speedup"] < thresholds.min_speedup:
        reasons.append(f"speed-up {figures['speedup']:.2f}x < {thresholds.min_speedup:.2f}x")
    return (not reasons) or force, reasons
