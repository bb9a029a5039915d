"""The OpenVINO candidates of `calibrate`'s CPU route, gated beside ONNX Runtime's INT8 variants.

Two kinds, both on OpenVINO's CPU device, each with an explicit inference precision hint:
- `ov-<precision>`: the bundle's fp32 video_encoder.onnx compiled at a reduced float precision
  (bf16, fp16) the CPU lists among its optimisation capabilities: no new file, no calibration;
- `ov-int8` (and `ov-int8-<precision>`): the model quantized by NNCF's post-training
  quantization with the transformer model type (its preset for attention models, including
  SmoothQuant) from the same calibration clips as ONNX Runtime's variants, its float remainder
  at fp32 (or at the reduced precision). Saved as OpenVINO IR (.xml graph + .bin weights,
  float weights uncompressed), both files hashed in the manifest like every file.
A device may list a capability its plugin then does not use for this model (the hint is then a
no-op): the gate's speed figure shows that, and such a candidate does not pass.
Every candidate is measured by the one gate (gate.py) in the same interleaved run as the ONNX
Runtime variants; calibrate.py keeps the fastest that passes, whichever runtime it is.
nncf is imported only when an INT8 candidate is built (it imports torch where torch is installed;
without torch it works on OpenVINO models alone).
"""

from __future__ import annotations

import contextlib
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..bundle.ov_sessions import OvEncoder, reduced_precisions, require_openvino, versions
from ..errors import MissingCapability

OV_INT8_XML = "video_encoder.int8-ov.xml"
OV_INT8_BIN = "video_encoder.int8-ov.bin"
DEVICE = "CPU"  # what calibrate gates: the CPU it runs on


@dataclass(frozen=True)
class OvCandidate:
    name: str
    precision: str  # the inference precision hint: fp32 | bf16 | fp16
    int8: bool  # the NNCF-quantized IR (else the fp32 ONNX at `precision`)

    @property
    def backend(self) -> str:
        return "ov-int8" if self.int8 else "ov"

    def to_dict(self) -> dict:
        return {**asdict(self), "route": "openvino", "backend": self.backend, "device": DEVICE}


OV_CANDIDATES: dict[str, OvCandidate] = {c.name: c for c in (
    OvCandidate("ov-int8", "fp32", True), OvCandidate("ov-bf16", "bf16", False), OvCandidate("ov-int8-bf16", "bf16", True),
    OvCandidate("ov-fp16", "fp16", False), OvCandidate("ov-int8-fp16", "fp16", True),
)}


# tried only when named (--variant): on an x86 CPU listing FP16 (Sapphire Rapids class) the INT8 IR with an fp16
# remainder ran ~20x slower than at fp32 on the tiny model, which makes the gate's timing pass the slowest by far
ASKED_ONLY = ("ov-int8-fp16",)


def ov_candidates() -> tuple[list[OvCandidate], str]:
    """The OpenVINO candidates for this CPU and why (one sentence for the manifest); MissingCapability without openvino."""
    import importlib.util

    require_openvino()
    reduced = reduced_precisions(DEVICE)
    int8 = importlib.util.find_spec("nncf") is not None
    found = [c for c in OV_CANDIDATES.values() if (c.precision == "fp32" or c.precision in reduced) and (int8 or not c.int8)
             and c.name not in ASKED_ONLY]
    lists = f"the CPU plugin lists {', '.join(p.upper() for p in reduced)}" if reduced else "the CPU plugin lists no BF16 or FP16"
    why = "OpenVINO: " + ", ".join(f"{c.name} ({'NNCF INT8 IR' if c.int8 else 'fp32 model'} at {c.precision})" for c in found)
    why += f" ({lists}{'' if int8 else '; no INT8 without nncf'})"
    return found, why


def quantize_nncf(fp32_onnx: Path, out_xml: Path, clips: np.ndarray, streams: int) -> dict:
    """NNCF post-training quantization of the video graph from `clips`, `streams` per call, saved as IR at `out_xml`."""
    ov = require_openvino()
    try:
        import nncf
    except ImportError as e:
        raise MissingCapability("OpenVINO INT8 candidates need nncf: pip install 'froster-edge[openvino,nncf]'") from e
    batches = [clips[i:i + streams] for i in range(0, len(clips) - streams + 1, streams)]
    model = ov.Core().read_model(str(fp32_onnx))
    with contextlib.redirect_stdout(sys.stderr):  # NNCF's progress bars: stdout carries --json - and --jsonl
        quantized = nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                                  subset_size=len(batches))
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return {"route": "openvino-nncf", "method": "nncf.quantize (post-training, min-max statistics, SmoothQuant, "
            "fast bias correction)", "model_type": "transformer", "calibration_clips": int(len(batches) * streams),
            "format": "OpenVINO IR", "versions": versions()}


def open_candidate(candidate: OvCandidate, fp32_onnx: Path, int8_xml: Path) -> OvEncoder:
    """The candidate compiled on the CPU with its precision hint (the gate's encoder, the runtime's code). Not
    cached: a gate that keeps nothing leaves the bundle as it was; `run` caches what it compiles."""
    return OvEncoder(int8_xml if candidate.int8 else fp32_onnx, DEVICE, candidate.precision)
