"""The TensorRT and CUDA paths a Jetson or GPU box takes first, checked on a CPU (issue 26).

TensorRT cannot run here, so `build_engine` is driven through a small stand-in of the TensorRT Python
API (the calls bundle.engines makes, with what each records) on a real ONNX graph; cuda-bindings is
the real one where it is installed (a CPU box answers cudaErrorInsufficientDriver, as a driver older
than its runtime does); the QDQ models are ONNX Runtime's real ones, their types read by onnx's shape
inference. What only a GPU can confirm (an engine that builds and runs, its speed) is in test_trt.py.
"""

from __future__ import annotations

import json
import shutil
from enum import IntEnum
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from froster_edge.bundle import engines as tb
from froster_edge.bundle import manifest as mf
from froster_edge.bundle.trt_check import check_onnx
from froster_edge.calibration import trt_route
from froster_edge.calibration.clips import sample_clips
from froster_edge.calibration.options import CalibrationOptions
from froster_edge.data.lists import gather_videos
from froster_edge.errors import ConfigError, MissingCapability

from .helpers import CLIPS, assert_one_line_error, cli

# What TensorRT 10.3's parser logs when it sets LayerNormalization's compute precision in a strongly
# typed network (the importer calls setComputePrecision unguarded before 10.6); written in TensorRT's
# API-error format, not captured from a device.
LAYERNORM_REFUSAL = ("3: [normalizationLayer.cpp::setComputePrecision::52] Error Code 3: API Usage Error (Parameter check "
                     "failed, condition: !mNetwork->isStronglyTyped(). setComputePrecision cannot be called on a layer "
                     "of a strongly typed network.)")


class FakeTensorRT:
    """The TensorRT Python API as bundle.engines uses it; `version` 10.x has BuilderFlag.INT8, 11.x has not.
    `refuse_layernorm`: a strongly typed parse logs LAYERNORM_REFUSAL and fails, as 10.3's may."""

    def __init__(self, version: str, refuse_layernorm: bool = False):
        self.__version__ = version
        self.refuse_layernorm = refuse_layernorm
        self.builds: list[dict] = []
        flags = {"FP16": 0, "INT8": 1} if version.startswith("10.") else {}
        self.BuilderFlag = SimpleNamespace(**flags)
        self.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=5)
        self.MemoryPoolType = SimpleNamespace(WORKSPACE=0)
        fake = self

        class ILogger:
            Severity = IntEnum("Severity", "INTERNAL_ERROR ERROR WARNING INFO VERBOSE", start=0)

            def __init__(self):
                pass

        class Builder:
            def __init__(self, logger):
                self.logger = logger

            def create_network(self, flags):
                return SimpleNamespace(flags=flags)

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return SimpleNamespace(set_shape=lambda *a: None)

            def build_serialized_network(self, network, config):
                fake.builds.append({"network_flags": network.flags, "builder_flags": sorted(config.flags)})
                return b"plan:" + json.dumps(fake.builds[-1]).encode()

        class Config:
            def __init__(self):
                self.flags: set[str] = set()

            def set_memory_pool_limit(self, pool, size):
                pass

            def set_flag(self, flag):
                self.flags.add(next(k for k, v in vars(fake.BuilderFlag).items() if v == flag))

            def create_timing_cache(self, data):
                return data

            def set_timing_cache(self, cache, ignore_mismatch):
                pass

            def get_timing_cache(self):
                return SimpleNamespace(serialize=lambda: b"timing")

            def add_optimization_profile(self, profile):
                pass

        class OnnxParser:
            def __init__(self, network, logger):
                self.network, self.logger = network, logger
                self.num_errors = 0

            def parse_from_file(self, path):
                strong = self.network.flags & (1 << 5)
                if strong and fake.refuse_layernorm:
                    self.logger.log(ILogger.Severity.ERROR, LAYERNORM_REFUSAL)
                    self.num_errors = 1
                    return False
                return True

            def get_error(self, i):
                return SimpleNamespace(desc=lambda: "In node 7 (importLayerNormalization): the layer could not be configured")

        self.ILogger, self.Builder, self.OnnxParser = ILogger, Builder, OnnxParser


@pytest.fixture
def graph(tiny_bundle, tmp_path) -> Path:
    """A real TensorRT-compatible graph (the tiny bundle's fp16 video encoder) for the builds."""
    path = tmp_path / "video_encoder.fp16.onnx"
    shutil.copy(tiny_bundle / mf.VIDEO_FP16_ONNX, path)
    return path


def _build(monkeypatch, fake: FakeTensorRT, graph: Path, precision: str, engines: Path) -> tb.EngineRecord:
    monkeypatch.setattr(tb, "require_tensorrt", lambda: fake)
    monkeypatch.setattr(tb, "cuda_device", lambda: ("Orin (stand-in)", "8.7"))
    spec = tb.EngineSpec("video_encoder", graph.name, mf.sha256_file(graph), {"frames": ((2, 4, 64, 64, 3),) * 3}, precision)
    return tb.build_engine(graph, spec, engines)


STRONG_BIT = 1 << 5


def test_int8_on_tensorrt_10_is_built_with_the_int8_and_fp16_flags(monkeypatch, graph, tmp_path):
    """Item 5: on 10.x the QDQ graph (quantized from fp32) is built weakly typed with INT8 + FP16, so what is
    not quantized runs in fp16; a strongly typed build would keep all of it in fp32."""
    fake = FakeTensorRT("10.3.0")
    record = _build(monkeypatch, fake, graph, "int8", tmp_path / "engines")
    assert fake.builds == [{"network_flags": 0, "builder_flags": ["FP16", "INT8"]}]
    assert record.typing == "weak (flags: INT8+FP16)" and (tmp_path / "engines" / f"{record.key}.plan").is_file()
    fp16 = _build(monkeypatch, fake, graph, "fp16", tmp_path / "engines")
    assert fake.builds[-1] == {"network_flags": STRONG_BIT, "builder_flags": []} and fp16.typing == "strong"


def test_tensorrt_11_builds_everything_strongly_typed(monkeypatch, graph, tmp_path):
    fake = FakeTensorRT("11.1.0")
    record = _build(monkeypatch, fake, graph, "int8", tmp_path / "engines")
    assert fake.builds == [{"network_flags": STRONG_BIT, "builder_flags": []}] and record.typing == "strong"


def test_a_parser_that_refuses_layernorm_precision_in_a_strong_network_gets_a_flagged_build(monkeypatch, graph, tmp_path, caplog):
    """Item 6: TensorRT 10.3's parser sets LayerNormalization's compute precision even in a strongly
    typed network; the build log says so, and the fp16 graph is built with the FP16 flag instead."""
    assert tb.layernorm_precision_refused(["[W] something else", LAYERNORM_REFUSAL])
    assert not tb.layernorm_precision_refused(["Error Code 4: Internal Error (could not find any implementation)"])
    fake = FakeTensorRT("10.3.0", refuse_layernorm=True)
    record = _build(monkeypatch, fake, graph, "fp16", tmp_path / "engines")
    assert fake.builds == [{"network_flags": 0, "builder_flags": ["FP16"]}]
    assert record.typing == "weak (flags: FP16)"
    assert any("LayerNormalization" in r.getMessage() for r in caplog.records)


def test_an_unrelated_strong_build_failure_is_not_retried(monkeypatch, graph, tmp_path):
    fake = FakeTensorRT("10.3.0")
    fake.OnnxParser.parse_from_file = lambda self, path: False
    fake.OnnxParser.num_errors = 1
    with pytest.raises(Exception, match="cannot parse it"):
        _build(monkeypatch, fake, graph, "fp16", tmp_path / "engines")
    assert fake.builds == []


def test_one_timing_cache_per_tensorrt_version_and_the_typing_in_the_key(monkeypatch, graph, tmp_path):
    """Item 9: a 10.3 and an 11.1 build of one bundle keep their own timing caches, both outside what
    the manifest verifies; the planned typing changes the engine's key."""
    engines = tmp_path / "engines"
    _build(monkeypatch, FakeTensorRT("10.3.0"), graph, "fp16", engines)
    _build(monkeypatch, FakeTensorRT("11.1.0"), graph, "fp16", engines)
    assert sorted(p.name for p in engines.glob("timing*")) == ["timing-10.3.0.cache", "timing-11.1.0.cache"]
    assert all(f"engines/{p.name}".startswith(mf.CACHES) for p in engines.glob("timing*"))
    spec = tb.EngineSpec("v", "f.onnx", "0" * 64, {"frames": ((1, 2),) * 3}, "int8")
    assert spec.key("10.3.0", "8.7", "strong") != spec.key("10.3.0", "8.7", "weak (flags: INT8+FP16)")


def test_a_cuda_error_names_the_runtime_and_driver_versions():
    """Item 3, with the real cuda-bindings: the refusal says which CUDA runtime met which driver."""
    pytest.importorskip("cuda.bindings.runtime", reason="cuda-bindings is not installed here")
    from cuda.bindings import runtime as cudart

    err, _ = cudart.cudaGetDeviceCount()
    if int(err) == 0:
        pytest.skip("this machine has a working CUDA driver: the refusal cannot be provoked")
    runtime, driver = tb.cuda_versions(cudart)
    with pytest.raises(MissingCapability) as e:
        tb.cuda_device()
    message = str(e.value)
    assert f"CUDA runtime {runtime // 1000}.{runtime % 1000 // 10}" in message and "driver " in message
    assert getattr(err, "name", "") in message


class _InsufficientDriver:
    """cuda-bindings' runtime as a JetPack 6.1 box answers a 12.9 cuda-bindings: driver 12.6."""

    @staticmethod
    def cudaGetDeviceCount():
        return _Err(35, "cudaErrorInsufficientDriver"), None

    @staticmethod
    def cudaRuntimeGetVersion():
        return _Err(0, "cudaSuccess"), 12090

    @staticmethod
    def cudaDriverGetVersion():
        return _Err(0, "cudaSuccess"), 12060


class _Err(int):
    def __new__(cls, value: int, name: str):
        self = super().__new__(cls, value)
        self.name = name
        return self


def test_a_runtime_newer_than_the_driver_points_at_the_jetson_extra(monkeypatch):
    monkeypatch.setattr(tb, "cuda_runtime", lambda: _InsufficientDriver)
    with pytest.raises(MissingCapability) as e:
        tb.cuda_device()
    message = str(e.value)
    assert "cudaErrorInsufficientDriver (CUDA runtime 12.9, driver 12.6)" in message and "froster-edge[jetson]" in message


def test_probe_passes_trt_over_on_any_cuda_error(monkeypatch, tiny_bundle):
    """Item 9: probe() gives the reason instead of raising, whatever CUDA answers."""
    import sys

    from froster_edge.errors import FrosterError
    from froster_edge.runtime import backends

    monkeypatch.setitem(sys.modules, "tensorrt", SimpleNamespace(__version__="10.3.0"))
    manifest = mf.read_manifest(tiny_bundle)
    for error in (FrosterError("cudaGetDeviceProperties failed: cudaErrorUnknown"), RuntimeError("Failed to dlopen libcuda.so.1")):
        def broken(error=error):
            raise error
        monkeypatch.setattr(backends, "cuda_device", broken)
        assert backends.probe("trt", tiny_bundle, manifest) == str(error)


# --- the QDQ model: which graph, which types, made on one box and built on another ---------------------

@pytest.fixture(scope="module")
def calib():
    from froster_edge.sampling import SamplingConfig

    return sample_clips(gather_videos(CLIPS), SamplingConfig().spec(4), 64, 3, seed=0, clips_per_video=1)


def _output_types(path: Path) -> dict[str, set[str]]:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    types = {v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type)
             for v in [*model.graph.value_info, *model.graph.output]}
    out: dict[str, set[str]] = {}
    for n in model.graph.node:
        out.setdefault(n.op_type, set()).add(types.get(n.output[0], "?"))
    return out


@pytest.mark.parametrize("major,source,float_type", [(10, "video_encoder.onnx", "FLOAT"), (11, "video_encoder.fp16.onnx", "FLOAT16")])
def test_the_qdq_model_is_quantized_from_the_graph_its_tensorrt_needs(tiny_bundle, tmp_path, calib, major, source, float_type):
    """Item 5: for 11.x (strongly typed only) the QDQ model comes from the fp16 graph, so LayerNorm,
    Softmax and the attention products are fp16 in it; for 10.x from fp32 (the INT8+FP16 flags make
    them fp16 there). Both pass the TensorRT check and agree with the fp32 graph."""
    manifest = mf.read_manifest(tiny_bundle)
    assert trt_route.qdq_source(manifest, major)[0] == source
    out = tmp_path / "qdq.onnx"
    info = trt_route._quantize(tiny_bundle, manifest, calib, CalibrationOptions(trt=True), "s8s8", major, out, tmp_path / "cache")
    assert info["source"] == source and check_onnx(out).passed
    types = _output_types(out)
    for op in ("LayerNormalization", "Softmax", "MatMul"):
        assert types[op] == {float_type}, (op, types[op])
    assert types["QuantizeLinear"] == {"INT8"}
    x = calib.frames[:2]
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"frames": x})[0].astype(np.float64)
    ref = ort.InferenceSession(str(tiny_bundle / mf.VIDEO_ONNX), providers=["CPUExecutionProvider"]).run(None, {"frames": x})[0]
    cos = (got * ref).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert cos.min() > 0.95


def test_quantize_on_one_box_and_build_on_another(tiny_bundle, tmp_path):
    """Item 1: `calibrate --trt --quantize-only` needs no TensorRT nor GPU and writes the QDQ model into the
    bundle's calibration folder, stamped with what it came from; `--qdq` on the GPU box checks the stamp
    against its own bundle and TensorRT before any build."""
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = {p: p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    res = cli("calibrate", "--bundle", str(bundle), "--videos", str(CLIPS), "--trt", "--quantize-only", "--max-clips", "3")
    assert res.returncode == 0, res.stderr
    qdq = bundle / "calibration" / trt_route.QDQ_FILE
    assert f"wrote {qdq}" in res.stdout and "TensorRT 10.x" in res.stdout  # no tensorrt here: JetPack 6's 10.x
    assert {p: p.read_bytes() for p in before} == before  # nothing the manifest lists changed
    mf.verify_bundle(bundle)
    assert check_onnx(qdq).passed
    facts = trt_route.read_qdq_facts(qdq)
    manifest = mf.read_manifest(bundle)
    assert facts["source"] == mf.VIDEO_ONNX and facts["source_sha256"] == manifest["files"][mf.VIDEO_ONNX]
    trt_route.check_qdq_facts(facts, manifest, 10, "s8s8", "minmax", qdq)  # what a JetPack 6 box checks
    with pytest.raises(ConfigError, match="TensorRT 11.x: source"):
        trt_route.check_qdq_facts(facts, manifest, 11, "s8s8", "minmax", qdq)
    with pytest.raises(ConfigError, match="variant"):
        trt_route.check_qdq_facts(facts, manifest, 10, "s8s8-7bit", "minmax", qdq)
    with pytest.raises(ConfigError, match="not a QDQ model made by"):
        trt_route.read_qdq_facts(bundle / mf.VIDEO_ONNX)


def test_refused_trt_combinations_cost_nothing(tiny_bundle):
    """Item 9: --trt --ops all (ONNX Runtime's int32 biases, which TensorRT's DequantizeLinear does not take)
    is refused in one line before any decoding; so are --quantize-only without --trt and both QDQ options."""
    assert_one_line_error(cli("calibrate", "--bundle", str(tiny_bundle), "--videos", str(CLIPS), "--trt", "--ops", "all"),
                          1, "--ops linear")
    assert_one_line_error(cli("calibrate", "--bundle", str(tiny_bundle), "--videos", str(CLIPS), "--quantize-only"),
                          1, "belong to --trt")
    assert_one_line_error(cli("calibrate", "--bundle", str(tiny_bundle), "--videos", str(CLIPS), "--trt", "--quantize-only",
                              "--qdq", str(tiny_bundle / mf.VIDEO_ONNX)), 1, "give one of them")


def test_an_ort_trt_engine_is_timed_against_ort_cuda_and_a_slow_one_warns(tiny_bundle):
    """Item 7: ONNX Runtime 1.27+ on a Jetson may build a weakly typed, slow engine: export records the
    ort-trt engine's ms a call against ort-cuda on the same graph and warns when it is not faster. Here
    two CPU sessions of the same graph stand in for the two providers (the figures are not asserted)."""
    assert "weakly typed" in tb.slow_engine_warning(5.0, 4.0, "1.27.0") and "1.27.0" in tb.slow_engine_warning(4.0, 4.0, "1.27.0")
    assert tb.slow_engine_warning(3.0, 4.0, "1.27.0") is None and tb.slow_engine_warning(3.0, None, "1.27.0") is None
    session = ort.InferenceSession(str(tiny_bundle / mf.VIDEO_ONNX), providers=["CPUExecutionProvider"])
    frames = np.zeros(mf.read_manifest(tiny_bundle)["preprocessing"]["input"]["shape"], np.uint8)
    record = tb.ort_trt_speed(session, session, frames, reps=2)
    assert record["ort_trt_ms"] > 0 and record["ort_cuda_ms"] > 0 and record["reps"] == 2
    assert record["warning"] == tb.slow_engine_warning(record["ort_trt_ms"], record["ort_cuda_ms"], ort.__version__)
    alone = tb.ort_trt_speed(session, None, frames, reps=2)
    assert alone["ort_cuda_ms"] is None and alone["speedup_vs_ort_cuda"] is None and alone["warning"] is None
