"""GPU backends of the runtime against ONNX Runtime on the CPU, on a real clip. Skip without them.

Run on a GPU machine by scripts/device_check.sh (TensorRT tests need tensorrt there).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from froster_edge.runtime.options import ClassifierOptions, RunOptions
from froster_edge.runtime.pipeline import Pipeline

from .helpers import CLIP_B, VIDEOS, Collect, export_tiny

try:
    import tensorrt

    from froster_edge.bundle.engines import tensorrt_version_problem

    TRT_SKIP = tensorrt_version_problem(tensorrt.__version__)
except ImportError:
    TRT_SKIP = "tensorrt is not installed"
if TRT_SKIP is None:
    from froster_edge.bundle.engines import cuda_runtime
    from froster_edge.errors import MissingCapability

    try:
        cuda_runtime()  # the trt backend's device buffers come from cuda-python
    except MissingCapability as e:
        TRT_SKIP = str(e)

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
PROVIDERS = ort.get_available_providers()


def probabilities(bundle, backend: str) -> tuple[str, np.ndarray]:
    sink = Collect()
    options = RunOptions(sources=[str(CLIP_B)], backend=backend, classifier=ClassifierOptions(smoothing="none", top_k=12))
    pipeline = Pipeline(bundle, options, [sink])
    pipeline.run()
    return pipeline.backend.name, np.array([[dict(d.top)[n] for n in sorted(dict(d.top))] for d in sink.decisions])


@pytest.mark.gpu
@needs_gpu
def test_torch_backend_on_cuda_matches_onnxruntime_cpu(tiny_bundle):
    name, got = probabilities(tiny_bundle, "torch")
    _, want = probabilities(tiny_bundle, "ort-cpu")
    assert name == "torch" and got.shape == (5, 12)
    np.testing.assert_allclose(got, want, atol=1e-3)


@pytest.mark.gpu
@needs_gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in PROVIDERS, reason="onnxruntime has no CUDAExecutionProvider here")
def test_ort_cuda_backend_runs_the_fp16_graph(tiny_bundle):
    name, got = probabilities(tiny_bundle, "ort-cuda")
    _, want = probabilities(tiny_bundle, "ort-cpu")
    assert name == "ort-cuda"
    np.testing.assert_allclose(got, want, atol=2e-2)
    assert (got.argmax(1) == want.argmax(1)).mean() >= 0.8


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif(TRT_SKIP is not None, reason=str(TRT_SKIP))
def test_trt_backend_is_picked_by_auto_and_matches_onnxruntime_cpu(tmp_path):
    export_tiny(tmp_path / "b", VIDEOS[:2], streams=2, trt=True, workspace_gb=1.0, max_parity_clips=2)
    name, got = probabilities(tmp_path / "b", "auto")
    _, want = probabilities(tmp_path / "b", "ort-cpu")
    assert name == "trt"
    np.testing.assert_allclose(got, want, atol=2e-2)


@pytest.mark.trt
@needs_gpu
@pytest.mark.skipif("TensorrtExecutionProvider" not in PROVIDERS, reason="onnxruntime has no TensorrtExecutionProvider here")
def test_ort_trt_backend_uses_the_bundle_engine_cache(tmp_path):
    export_tiny(tmp_path / "b", VIDEOS[:2], streams=2, trt=True, trt_route="ort-trt", workspace_gb=1.0, max_parity_clips=2)
    cached = sorted((tmp_path / "b" / "engines" / "ort-trt").iterdir())
    name, got = probabilities(tmp_path / "b", "ort-trt")
    _, want = probabilities(tmp_path / "b", "ort-cpu")
    assert name == "ort-trt" and sorted((tmp_path / "b" / "engines" / "ort-trt").iterdir()) == cached
    np.testing.assert_allclose(got, want, atol=2e-2)
