"""TensorRT engines and ONNX Runtime GPU providers: build, cache reuse, fp16 parity. Skip without them.

Run on a GPU machine by scripts/device_check.sh (TensorRT tests need tensorrt installed there).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from froster_edge.bundle import manifest as mf
from froster_edge.export.bundle import export_bundle
from froster_edge.export.options import ExportOptions
from froster_edge.bundle.parity import compare, load_parity_clips, run_in_streams
from froster_edge.bundle.sessions import onnx_video_encoder

from .test_export_bundle import CLASSES, VIDEOS, make_student

try:
    import tensorrt  # noqa: F401

    HAS_TRT = True
except ImportError:
    HAS_TRT = False

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed")
@pytest.mark.parametrize("layernorm_fp32", [False, True])
def test_trt_engines_build_pass_parity_and_are_reused(tmp_path, layernorm_fp32):
    student = make_student()
    options = ExportOptions(streams=2, trt=True, layernorm_fp32=layernorm_fp32, workspace_gb=1.0, max_parity_clips=4)
    first = export_bundle(student, tmp_path / "b", CLASSES, VIDEOS, options).manifest
    engines = {e["name"]: e for e in first["engines"]}
    assert set(engines) == {"video_encoder", "text_encoder"}
    video = engines["video_encoder"]
    assert video["parity"]["passed"] and video["parity"]["min_cosine"] >= 0.999
    assert video["shapes"]["frames"] == [[2, 4, 64, 64, 3]] * 3 and video["layernorm_fp32"] == layernorm_fp32
    assert (tmp_path / "b" / "engines" / "timing.cache").is_file()
    mf.verify_bundle(tmp_path / "b")
    again = export_bundle(student, tmp_path / "b", CLASSES, VIDEOS, options).manifest
    assert all(e["reused"] for e in again["engines"]), "an unchanged ONNX must reuse its cached engines"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu not installed)")
def test_ort_cuda_fp16_matches_fp32(tmp_path):
    student = make_student()
    result = export_bundle(student, tmp_path / "b", CLASSES, VIDEOS, ExportOptions(streams=2, max_parity_clips=4))
    clips = load_parity_clips(VIDEOS, 4, 64, 4).frames
    providers = ["CUDAExecutionProvider"]
    fp32 = run_in_streams(onnx_video_encoder(result.bundle / mf.VIDEO_ONNX, providers), clips, 2)
    fp16 = run_in_streams(onnx_video_encoder(result.bundle / mf.VIDEO_FP16_ONNX, providers), clips, 2)
    cpu = run_in_streams(onnx_video_encoder(result.bundle / mf.VIDEO_ONNX), clips, 2)
    assert compare(fp32, cpu)["max_abs"] < 1e-3
    assert compare(fp16, fp32)["min_cosine"] >= 0.999
    assert np.isfinite(fp16).all()


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif("TensorrtExecutionProvider" not in ort.get_available_providers(),
                    reason="onnxruntime has no TensorrtExecutionProvider here")
def test_ort_trt_route_writes_a_persistent_engine_cache(tmp_path):
    student = make_student()
    options = ExportOptions(streams=2, trt=True, trt_route="ort-trt", workspace_gb=1.0, max_parity_clips=2)
    manifest = export_bundle(student, tmp_path / "b", CLASSES, VIDEOS, options).manifest
    assert [e["route"] for e in manifest["engines"]] == ["ort-trt", "ort-trt"]
    assert any((tmp_path / "b" / "engines" / "ort-trt").iterdir())


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif(not HAS_TRT, reason="tensorrt is not installed")
@pytest.mark.parametrize("method", ["entropy", "minmax"])
def test_trt_int8_engine_through_calibrate(tmp_path, method):
    from froster_edge.calibration.calibrate import calibrate_int8
    from froster_edge.calibration.options import CalibrationOptions, GateThresholds

    from .conftest import CLIPS

    bundle = tmp_path / "b"
    export_bundle(make_student(), bundle, CLASSES, VIDEOS, ExportOptions(streams=1, fp16=False, max_parity_clips=2))
    options = CalibrationOptions(trt=True, method=method, max_clips=6, reps=3, thresholds=GateThresholds(0.0, 0.0))
    report = calibrate_int8(bundle, CLIPS, options=options)
    assert report["accepted"] and report["int8"]["route"] == "tensorrt"
    assert (bundle / "engines" / report["int8"]["cache"]).is_file()
    manifest = mf.verify_bundle(bundle)
    precisions = sorted(e["precision"] for e in manifest["engines"])
    assert precisions == ["fp16", "int8"]
    assert 0.0 <= report["gate"]["top1_agreement"] <= 1.0 and np.isfinite(report["gate"]["speedup"])
