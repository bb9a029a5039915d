"""Calibration options: the one place their defaults live (no torch, so the CLI reads them fast)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Method = Literal["minmax", "entropy", "percentile"]  # TensorRT: entropy or minmax
Ops = Literal["linear", "all"]
Activation = Literal["uint8", "int8"]


@dataclass(frozen=True)
class GateThresholds:
    """Defaults: INT8 must agree with float on 95% of held-out clips and be 1.2x faster."""

    min_top1_agreement: float = 0.95
    min_speedup: float = 1.2


@dataclass
class CalibrationOptions:
    """INT8 calibration and its gate."""

    seed: int = 0
    max_clips: int = 64  # calibration clips
    clips_per_video: int = 2
    max_held_out: int = 32  # gate clips, from videos calibration never saw
    held_out_views: int = 3  # evenly spaced gate clips per held-out video (the eval protocol's 3 views)
    held_out_fraction: float = 0.25  # of --videos, when no --held-out list is given
    method: Method = "minmax"  # ONNX Runtime: minmax | entropy | percentile; TensorRT: entropy | minmax
    ops: Ops = "linear"  # linear: weight MatMuls only; all: whatever ONNX Runtime quantizes
    activation: Activation | None = None  # uint8 | int8; None: uint8 on x86, int8 on ARM
    preprocess: bool = False  # ONNX Runtime's quantization pre-processing (MatMul + Add -> Gemm): no gain measured
    trt: bool = False
    reps: int = 5  # timing repetitions of the gate
    force: bool = False
    thresholds: GateThresholds = field(default_factory=GateThresholds)


CALIBRATION_DEFAULTS = CalibrationOptions()
