"""Export options and parity thresholds: the one place their defaults live (no torch, so the CLI reads them fast).

See docs/export.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TrtRoute = Literal["tensorrt", "ort-trt"]


@dataclass(frozen=True)
class ParityThresholds:
    """Defaults: fp32 differs from torch by float rounding only; fp16 keeps direction and decisions."""

    fp32_max_abs: float = 1e-4
    fp32_min_cosine: float = 0.9999
    fp32_min_top1_agreement: float = 1.0
    fp16_min_cosine: float = 0.999
    fp16_min_top1_agreement: float = 0.0  # reported; a random or tiny model can flip near-ties


@dataclass
class ExportOptions:
    """Everything `froster-edge export` can change; the CLI's defaults come from here."""

    streams: int = 1
    fp16: bool = True
    layernorm_fp32: bool = False
    trt: bool = False
    trt_route: TrtRoute = "tensorrt"
    workspace_gb: float = 4.0
    max_parity_clips: int = 8
    thresholds: ParityThresholds = field(default_factory=ParityThresholds)


EXPORT_DEFAULTS = ExportOptions()
