"""The TensorRT side of `calibrate`: an int8+fp16 engine, gated against the fp16 engine on the GPU.

Speed is the int8 engine against the bundle's fp16 engine (built here if the bundle has none
for this GPU and TensorRT); agreement and cosine are against the fp32 ONNX model, the reference
every other gate uses. A rejected engine is deleted; its calibration table stays in engines/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable


from ..bundle import manifest as mf
from ..bundle import engines as tb
from ..bundle.labels import LabelTable
from ..bundle.parity import compare, run_in_streams
from ..bundle.sessions import onnx_video_encoder
from .clips import ClipSet
from .gate import decide, measure
from .options import CalibrationOptions
from .trt_int8 import make_calibrator


def calibrate_trt(bundle: Path, manifest: dict, calib: ClipSet, gate_clips: ClipSet, table: LabelTable,
                  options: CalibrationOptions, report: dict, log: Callable[[str], None]) -> dict:
    trt = tb.require_tensorrt()
    sm = tb.require_cuda_device()
    if options.method not in ("entropy", "minmax"):
        raise ValueError(f"TensorRT calibration method must be entropy or minmax, not {options.method!r}")
    pre = manifest["preprocessing"]
    streams = pre["streams"]
    shape = tuple(pre["input"]["shape"])
    engines_dir = bundle / mf.ENGINES_DIR
    engines_dir.mkdir(exist_ok=True)
    onnx_sha = manifest["files"][mf.VIDEO_ONNX]
    fp16_spec = tb.EngineSpec("video_encoder", mf.VIDEO_ONNX, onnx_sha, {"frames": (shape,) * 3}, "fp16")
    fp16 = tb.build_engine(bundle / mf.VIDEO_ONNX, fp16_spec, engines_dir)
    int8_spec = tb.EngineSpec("video_encoder", mf.VIDEO_ONNX, onnx_sha, {"frames": (shape,) * 3}, "int8",
                              calibration=f"{options.method}:{calib.digest()}")
    cache = engines_dir / f"int8-{int8_spec.key(trt.__version__, sm)}.calib"
    log(f"building the TensorRT int8 engine ({options.method} calibration on {len(calib.frames)} clips)")
    int8 = tb.build_engine(bundle / mf.VIDEO_ONNX, int8_spec, engines_dir,
                           calibrator=make_calibrator(calib.frames, streams, cache, options.method))
    fp16_engine, int8_engine = tb.TensorRTEngine(bundle / fp16.file), tb.TensorRTEngine(bundle / int8.file)
    figures = measure(fp16_engine, int8_engine, gate_clips.frames, streams, table, options.reps)
    reference = run_in_streams(onnx_video_encoder(bundle / mf.VIDEO_ONNX), gate_clips.frames, streams)
    vs_fp32 = compare(run_in_streams(int8_engine, gate_clips.frames, streams), reference, table)
    figures.update(min_cosine=vs_fp32["min_cosine"], top1_agreement=vs_fp32["top1_agreement"],
                   speed_baseline="tensorrt fp16 engine", agreement_reference="fp32 onnx")
    accepted, reasons = decide(figures, options.thresholds, options.force)
    int8.parity = figures
    report.update(int8={"route": "tensorrt", "method": options.method, "cache": cache.name, "engine": int8.file},
                  gate=figures, accepted=accepted, forced=bool(options.force and reasons), reasons=reasons,
                  file=int8.file if accepted else None)
    if accepted:
        engines = [e for e in manifest.get("engines", []) if e.get("key") not in (fp16.key, int8.key)]
        mf.update_files(bundle, manifest, [fp16.file, int8.file], engines=engines + [fp16.to_dict(), int8.to_dict()])
    elif not int8.reused:
        (bundle / int8.file).unlink(missing_ok=True)
    return report


