"""The TensorRT side of `calibrate`: an INT8 engine built from a QDQ model, gated on the GPU.

TensorRT 10 deprecated its implicit-quantization calibrators and TensorRT 11 removed them, so the
INT8 engine is built from an explicitly quantized ONNX: ONNX Runtime's static quantization (the CPU
route's `quantize_video_encoder`, same clips and methods, `target="tensorrt"`: the plain QDQ form
with every output requantized and float biases, not the CPU route's QGemm form) with symmetric int8
activations and weights, since TensorRT quantizes to symmetric int8 only (all-zero zero points).
The QDQ model must pass the TensorRT-compatibility check and is built as a strongly typed network.
Speed is measured against the bundle's fp16 engine (built here from video_encoder.fp16.onnx if the
bundle has none for this GPU and TensorRT); cosine and agreement against the fp32 ONNX model, the
reference of every other gate. Kept only when it passes: the QDQ file (`video_encoder.int8-trt.onnx`,
section `int8_trt` of the manifest) and its engine; otherwise both are deleted and the manifest is
unchanged (the range cache stays, so a forced rebuild is quick).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import ConfigError
from ..bundle import manifest as mf
from ..bundle import engines as tb
from ..bundle.labels import LabelTable
from ..bundle.parity import compare, run_in_streams
from ..bundle.sessions import onnx_video_encoder
from .clips import ClipSet
from .gate import decide, measure
from .int8 import quantize_video_encoder
from .options import CalibrationOptions
from .variants import variant

log = logging.getLogger(__name__)

TRT_INT8_ONNX = "video_encoder.int8-trt.onnx"


def trt_variant(names: tuple[str, ...] | list[str]) -> str:
    """The one variant --trt quantizes with (default s8s8): TensorRT quantizes to symmetric int8 only, so
    a variant with uint8 (asymmetric) activations or weights cannot be built."""
    names = list(dict.fromkeys(names)) or ["s8s8"]
    if len(names) > 1:
        raise ConfigError(f"--trt builds one engine: give at most one --variant, not {', '.join(names)}")
    chosen = variant(names[0])
    if chosen.activation != "int8" or chosen.weights != "int8":
        raise ConfigError(f"--trt quantizes activations to symmetric int8 (TensorRT has nothing else), not {chosen.name}: "
                          "use --variant s8s8 or s8s8-7bit")
    return chosen.name


def calibrate_trt(bundle: Path, manifest: dict, calib: ClipSet, gate_clips: ClipSet, table: LabelTable,
                  options: CalibrationOptions, report: dict, cache_dir: Path) -> dict:
    chosen = trt_variant(options.variants)
    tb.require_tensorrt()
    tb.cuda_device()
    pre = manifest["preprocessing"]
    streams = pre["streams"]
    shapes = {"frames": (tuple(pre["input"]["shape"]),) * 3}
    engines_dir = bundle / mf.ENGINES_DIR
    video = manifest["onnx"]["video_encoder"]
    float_file = video.get("fp16_file") or video["file"]
    mf.verify_bundle(bundle, [float_file])
    float_spec = tb.EngineSpec("video_encoder", float_file, manifest["files"][float_file], shapes,
                               "fp16" if video.get("fp16_file") else "fp32", bool(video.get("layernorm_fp32")))
    log.info(f"building (or reusing) the TensorRT engine of {float_file}, the speed baseline")
    float_rec = tb.build_engine(bundle / float_file, float_spec, engines_dir)
    tmp = bundle / f".{TRT_INT8_ONNX}.{os.getpid()}.tmp"
    int8_rec = None
    try:
        log.info(f"quantizing with ONNX Runtime ({options.method}, {options.ops} ops, symmetric int8) on {len(calib.frames)} clips")
        info = quantize_video_encoder(bundle / mf.VIDEO_ONNX, tmp, calib.frames, streams, cache_dir, calib.digest(),
                                      method=options.method, ops=options.ops, variant=chosen,
                                      target="tensorrt")
        spec = tb.EngineSpec("video_encoder", TRT_INT8_ONNX, mf.sha256_file(tmp), shapes, "int8",
                             calibration=f"{options.method}:{options.ops}:{calib.digest()}")
        log.info("building the TensorRT int8 engine from the QDQ model (strongly typed)")
        int8_rec = tb.build_engine(tmp, spec, engines_dir)
        log.info(f"gating on {len(gate_clips.frames)} held-out clips")
        with tb.TensorRTEngine(bundle / float_rec.file) as float_engine, tb.TensorRTEngine(bundle / int8_rec.file) as int8_engine:
            figures = measure(float_engine, int8_engine, gate_clips.frames, streams, table, options.reps)
            int8_out = run_in_streams(int8_engine, gate_clips.frames, streams)
        reference = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_ONNX), gate_clips.frames, streams)
        vs_fp32 = compare(int8_out, reference, table)
        figures.update(min_cosine=vs_fp32["min_cosine"], top1_agreement=vs_fp32["top1_agreement"],
                       speed_baseline=f"tensorrt {float_spec.precision} engine", agreement_reference="fp32 onnx")
        accepted, reasons = decide(figures, options.thresholds, options.force)
        int8_rec.parity = figures
        report.update(int8={**info, "route": "tensorrt-qdq", "onnx": TRT_INT8_ONNX, "engine": int8_rec.file},
                      gate=figures, accepted=accepted, forced=bool(options.force and reasons), reasons=reasons,
                      file=int8_rec.file if accepted else None)
        if accepted:
            os.replace(tmp, bundle / TRT_INT8_ONNX)
            keys = (float_rec.key, int8_rec.key)
            engines = [e for e in manifest.get("engines", []) if e.get("key") not in keys]
            section = {k: report[k] for k in ("file", "int8", "gate", "thresholds", "forced", "reasons", "calibration", "held_out")}
            mf.update_files(bundle, manifest, [float_rec.file, int8_rec.file, TRT_INT8_ONNX],
                            engines=engines + [float_rec.to_dict(), int8_rec.to_dict()], int8_trt=section)
    finally:
        tmp.unlink(missing_ok=True)
        if int8_rec is not None and not int8_rec.reused and not report.get("accepted"):
            (bundle / int8_rec.file).unlink(missing_ok=True)
    return report
