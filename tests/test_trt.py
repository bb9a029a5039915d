"""TensorRT engines and ONNX Runtime GPU providers: build, cache reuse, fp16 parity. Skip without them.

Run on a GPU machine by scripts/device_check.sh (TensorRT tests need tensorrt installed there).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.parity import compare, load_parity_clips, run_in_streams
from froster_edge.bundle.sessions import onnx_video_encoder

from .helpers import VIDEOS, export_tiny

try:
    import tensorrt

    from froster_edge.bundle.engines import tensorrt_version_problem

    TRT_SKIP = tensorrt_version_problem(tensorrt.__version__)
except ImportError:
    TRT_SKIP = "tensorrt is not installed"

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif(TRT_SKIP is not None, reason=str(TRT_SKIP))
@pytest.mark.parametrize("layernorm_fp32", [False, True])
def test_trt_engines_build_pass_parity_and_are_reused(tmp_path, layernorm_fp32):
    options = dict(streams=2, trt=True, layernorm_fp32=layernorm_fp32, workspace_gb=1.0, max_parity_clips=3)
    first = export_tiny(tmp_path / "b", **options).manifest
    (video,) = first["engines"]  # no text engine: label tables use the fp32 ONNX text encoder
    assert video["name"] == "video_encoder" and video["precision"] == "fp16" and video["onnx_file"] == "video_encoder.fp16.onnx"
    assert video["parity"]["passed"] and video["parity"]["min_cosine"] >= 0.999 and video["parity"]["n"] == 3
    assert video["shapes"]["frames"] == [[2, 4, 64, 64, 3]] * 3 and video["layernorm_fp32"] == layernorm_fp32
    assert (tmp_path / "b" / "engines" / f"timing-{video['tensorrt']}.cache").is_file()
    mf.verify_bundle(tmp_path / "b")
    again = export_tiny(tmp_path / "b", **options).manifest  # the same seed: the same weights and ONNX
    assert all(e["reused"] for e in again["engines"]), "an unchanged ONNX must reuse its cached engines"


@pytest.mark.gpu
@needs_gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="onnxruntime has no CUDAExecutionProvider here (onnxruntime-gpu not installed)")
def test_ort_cuda_fp16_matches_fp32(tmp_path):
    result = export_tiny(tmp_path / "b", streams=2, max_parity_clips=4)
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
    manifest = export_tiny(tmp_path / "b", streams=2, trt=True, trt_route="ort-trt", workspace_gb=1.0, max_parity_clips=3).manifest
    (engine,) = manifest["engines"]
    assert engine["route"] == "ort-trt" and engine["onnx_file"] == "video_encoder.fp16.onnx"
    assert engine["parity"]["passed"] and engine["parity"]["n"] == 3  # 3 clips through a 2-stream graph: padded
    assert any((tmp_path / "b" / "engines" / "ort-trt").iterdir())


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif(TRT_SKIP is not None, reason=str(TRT_SKIP))
@pytest.mark.parametrize("method", ["minmax", "entropy"])
def test_trt_int8_engine_from_the_qdq_model_through_calibrate(tmp_path, method):
    from froster_edge.bundle.trt_check import check_onnx
    from froster_edge.calibration.calibrate import calibrate_int8
    from froster_edge.calibration.options import CalibrationOptions, GateThresholds
    from froster_edge.calibration.trt_route import TRT_INT8_ONNX

    from .helpers import CLIPS

    bundle = tmp_path / "b"
    export_tiny(bundle, streams=1, max_parity_clips=2)
    options = CalibrationOptions(trt=True, method=method, max_clips=6, reps=3, thresholds=GateThresholds(0.0, 0.0))
    report = calibrate_int8(bundle, CLIPS, options=options)
    assert report["accepted"] and report["int8"]["route"] == "tensorrt-qdq" and report["int8"]["variant"] == "s8s8"
    assert check_onnx(bundle / TRT_INT8_ONNX).passed
    manifest = mf.verify_bundle(bundle)
    engines = {e["precision"]: e for e in manifest["engines"]}
    assert sorted(engines) == ["fp16", "int8"] and engines["int8"]["onnx_file"] == TRT_INT8_ONNX
    assert manifest["int8_trt"]["file"] == engines["int8"]["file"]
    assert 0.0 <= report["gate"]["top1_agreement"] <= 1.0 and np.isfinite(report["gate"]["speedup"])


def test_calibrate_trt_refuses_asymmetric_activations_and_needs_tensorrt(tiny_bundle, tmp_path):
    """CPU: uint8 activations are refused before any work (TensorRT quantizes symmetric int8 only);
    without a supported TensorRT the route is a missing capability and the bundle is untouched."""
    import shutil

    from froster_edge.calibration.calibrate import calibrate_int8
    from froster_edge.calibration.options import CalibrationOptions
    from froster_edge.errors import ConfigError, MissingCapability

    from .helpers import CLIPS

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = (bundle / "manifest.json").read_bytes()
    with pytest.raises(ConfigError, match="symmetric int8"):  # the library refuses it too, not only the CLI
        calibrate_int8(bundle, CLIPS, options=CalibrationOptions(trt=True, variants=("u8s8",), max_clips=2, max_held_out=2))
    if TRT_SKIP is not None or not torch.cuda.is_available():
        with pytest.raises(MissingCapability):
            calibrate_int8(bundle, CLIPS, options=CalibrationOptions(trt=True, max_clips=2, max_held_out=2))
    assert (bundle / "manifest.json").read_bytes() == before


def test_one_torch_free_engine_runner_for_export_calibrate_and_run(tmp_path):
    """Export's and calibrate's gates and `run`'s trt backends share bundle.engines.TensorRTEngine
    (cuda-python buffers); without TensorRT, a CUDA GPU or cuda-python each says what is missing."""
    from froster_edge.bundle import engines as tb
    from froster_edge.errors import MissingCapability
    from froster_edge.runtime.backends import TrtBackend

    assert issubclass(TrtBackend, tb.TensorRTEngine)
    if TRT_SKIP is not None:
        with pytest.raises(MissingCapability, match="tensorrt|TensorRT"):
            tb.TensorRTEngine(tmp_path / "video.plan")
    if not torch.cuda.is_available():
        with pytest.raises(MissingCapability, match="cuda-python|GPU|CUDA"):
            tb.cuda_device()
