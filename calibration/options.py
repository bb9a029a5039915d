"""Calibration options: the one place their defaults live (no torch, so the CLI reads them fast).

See docs/calibration.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Method = Literal["minmax", "entropy", "percentile"]
Ops = Literal["linear", "all"]


@dataclass(frozen=True)
class GateThresholds:
    """Defaults: INT8 must agree with float on 95% of held-out clips, keep every embedding's cosine
    to float >= 0.99 (8-bit saturation drops it well below) and be 1.2x faster."""

    min_top1_agreement: float = 0.95
    min_speedup: float = 1.2
    min_cosine: float = 0.99


@dataclass
class CalibrationOptions:
    """INT8 calibration and its gate."""

    seed: int = 0
    max_clips: int = 64  # calibration clips
    clips_per_video: int = 2
    max_held_out: int = 32  # gate clips, from videos calibration never saw
    held_out_views: int = 3  # evenly spaced gate clips per held-out video (the eval protocol's 3 views)
    held_out_fraction: float = 0.25  # of --videos, when no --held-out list is given
    method: Method = "minmax"  # minmax | entropy | percentile (ONNX Runtime's range calibration, both routes)
    ops: Ops = "linear"  # linear: weight MatMuls only; all: whatever ONNX Runtime quantizes
    variants: tuple[str, ...] = ()  # INT8 variants to try (variants.py); empty: chosen for this CPU's dot product
    trt: bool = False
    openvino: bool | None = None  # OpenVINO candidates on the CPU route; None: where openvino is installed
    quantize_only: bool = False  # trt: write the QDQ model into calibration/, build nothing (no GPU needed)
    qdq: Path | None = None  # trt: build this QDQ model (from quantize_only on another machine) instead of quantizing
    reps: int = 5  # timing repetitions of the gate
    force: bool = False
    thresholds: GateThresholds = field(default_factory=GateThresholds)


CALIBRATION_DEFAULTS = CalibrationOptions()
