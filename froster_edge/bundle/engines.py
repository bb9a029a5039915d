"""TensorRT engines from the bundle's ONNX graphs, and the cache that keeps a wrong engine from loading.

An engine is only valid for the TensorRT version, the GPU architecture, the precision and the
input shapes it was built for, and for the exact ONNX file it came from. All of those go into
its cache key, the key is its file name (`engines/<key>.plan`), and the manifest lists each
engine with what went into its key, so a runtime can pick the one built for its own GPU and
TensorRT, and a rebuild with nothing changed reuses the file instead of building again.

Two routes:
- `tensorrt`: the TensorRT 10 Python API (tensor-name I/O), static shapes for the video engine,
  an optimisation profile for the text engine's prompt axis, a workspace limit, a timing cache
  shared by all builds of the bundle, and optionally LayerNorm pinned to fp32.
- `ort-trt`: ONNX Runtime's TensorRT execution provider builds and caches the engines itself
  (`engines/ort-trt/`) the first time a session runs.
`tensorrt` is imported here only, lazily: everything else in froster-edge works without it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FrosterError, MissingCapability
from ..io import atomic_write_bytes

TIMING_CACHE = "timing.cache"
ORT_TRT_DIR = "ort-trt"


@dataclass(frozen=True)
class EngineSpec:
    """What one engine is built for. `shapes`: input name -> (min, opt, max) shapes."""

    name: str
    onnx_file: str
    onnx_sha256: str
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    precision: str = "fp16"  # fp16, fp32, or int8 (int8 + fp16 mixed, needs a calibrator)
    layernorm_fp32: bool = False
    calibration: str = ""  # int8: the calibration data and method, as a digest

    def key(self, tensorrt_version: str, compute_capability: str) -> str:
        """The cache key: changes with anything that makes an engine invalid."""
        return engine_key(tensorrt_version, compute_capability, self.precision, self.shapes, self.onnx_sha256,
                          self.layernorm_fp32, self.calibration)


def engine_key(tensorrt_version: str, compute_capability: str, precision: str, shapes: dict[str, Any],
               onnx_sha256: str, layernorm_fp32: bool = False, calibration: str = "") -> str:
    fields = {
        "tensorrt": tensorrt_version, "sm": compute_capability, "precision": precision,
        "shapes": {k: [list(s) for s in v] for k, v in sorted(shapes.items())},
        "onnx": onnx_sha256, "layernorm_fp32": bool(layernorm_fp32),
    }
    if calibration:
        fields["calibration"] = calibration
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:24]


@dataclass
class EngineRecord:
    """One built engine as the manifest lists it."""

    name: str
    file: str
    route: str
    precision: str
    tensorrt: str
    sm: str
    onnx_file: str
    onnx_sha256: str
    shapes: dict[str, list[list[int]]]
    layernorm_fp32: bool
    key: str
    reused: bool = False
    build_seconds: float = 0.0
    parity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def require_tensorrt():
    """The tensorrt module (10.x), or MissingCapability saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise MissingCapability(
            "tensorrt is not installed: install TensorRT 10 (pip install 'froster-edge[trt]', or JetPack on Jetson)") from e
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise MissingCapability(f"TensorRT {trt.__version__} is too old: froster-edge builds with the TensorRT 10 API")
    return trt


def require_cuda_device() -> str:
    """The GPU's compute capability as "major.minor", or MissingCapability when there is no GPU."""
    import torch

    if not torch.cuda.is_available():
        raise MissingCapability("no CUDA GPU is visible: TensorRT engines must be built on the GPU that runs them")
    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def build_engine(onnx_path: Path, spec: EngineSpec, engines_dir: Path, workspace_gb: float = 4.0,
                 calibrator=None) -> EngineRecord:
    """Build (or reuse from the cache) the engine for `spec`; the timing cache is read and updated.

    An int8 spec needs `calibrator` (a tensorrt.IInt8Calibrator); the build is int8 + fp16 mixed.
    """
    import time

    trt = require_tensorrt()
    sm = require_cuda_device()
    key = spec.key(trt.__version__, sm)
    plan = engines_dir / f"{key}.plan"
    record = EngineRecord(name=spec.name, file=f"{engines_dir.name}/{plan.name}", route="tensorrt",
                          precision=spec.precision, tensorrt=trt.__version__, sm=sm, onnx_file=spec.onnx_file,
                          onnx_sha256=spec.onnx_sha256, shapes={k: [list(s) for s in v] for k, v in spec.shapes.items()},
                          layernorm_fp32=spec.layernorm_fp32, key=key)
    if plan.is_file():
        record.reused = True
        return record
    start = time.perf_counter()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise FrosterError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if spec.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if spec.precision == "int8":
        if calibrator is None:
            raise FrosterError("an int8 engine needs calibration data: use froster-edge calibrate --trt")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    elif spec.precision not in ("fp16", "fp32"):
        raise FrosterError(f"unknown engine precision {spec.precision!r} (fp16, fp32 or int8)")
    if spec.layernorm_fp32:
        _pin_normalization_fp32(trt, network, config)
    timing_path = engines_dir / TIMING_CACHE
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)  # a cache from another GPU is ignored, not fatal
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in spec.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FrosterError(f"TensorRT could not build an engine for {onnx_path.name} (see the TensorRT log above)")
    atomic_write_bytes(plan, bytes(serialized))
    atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
    record.build_seconds = round(time.perf_counter() - start, 2)
    return record


def _pin_normalization_fp32(trt, network, config) -> None:
    """Run LayerNorm in fp32: some TensorRT versions overflow fp16 there on CLIP activations."""
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.NORMALIZATION:
            layer.precision = trt.float32
            layer.set_output_type(0, trt.float32)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


class TensorRTEngine:
    """Run a serialized engine on torch CUDA tensors (export-time parity; the runtime has its own runner)."""

    def __init__(self, plan: Path):
        import torch

        trt = require_tensorrt()
        self._torch = torch
        self._trt = trt
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
        if self.engine is None:
            raise FrosterError(f"{plan} is not an engine this TensorRT/GPU can load: rebuild with froster-edge export --trt")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]

    def __call__(self, array):
        import numpy as np

        torch, trt = self._torch, self._trt
        (name,) = self.inputs
        x = torch.from_numpy(np.ascontiguousarray(array)).cuda()
        self.context.set_input_shape(name, tuple(x.shape))
        self.context.set_tensor_address(name, x.data_ptr())
        outs = []
        for out_name in self.outputs:
            dtype = torch.from_numpy(np.zeros(0, trt.nptype(self.engine.get_tensor_dtype(out_name)))).dtype
            y = torch.empty(tuple(self.context.get_tensor_shape(out_name)), dtype=dtype, device="cuda")
            self.context.set_tensor_address(out_name, y.data_ptr())
            outs.append(y)
        stream = torch.cuda.current_stream()
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise FrosterError("TensorRT execution failed")
        stream.synchronize()
        return outs[0].float().cpu().numpy()


def build_ort_trt_cache(onnx_path: Path, engines_dir: Path, example: dict[str, Any], fp16: bool = True,
                        workspace_gb: float = 4.0, profile: dict[str, tuple[str, str, str]] | None = None) -> dict[str, Any]:
    """Build ONNX Runtime TensorRT-EP engines into engines/ort-trt by running `example` once.

    `profile` gives min/opt/max shapes for dynamic inputs ("tokens": ("1x77", "32x77", "1024x77")).
    The runtime opens sessions with `ort_trt_provider_options(bundle)` and finds the cache warm.
    """
    import onnxruntime as ort

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise MissingCapability(
            "ONNX Runtime has no TensorrtExecutionProvider here: install onnxruntime-gpu with TensorRT 10 libraries")
    cache = engines_dir / ORT_TRT_DIR
    cache.mkdir(parents=True, exist_ok=True)
    options = ort_trt_provider_options(cache, fp16, workspace_gb)
    if profile:
        for kind, i in (("min", 0), ("opt", 1), ("max", 2)):
            options[f"trt_profile_{kind}_shapes"] = ",".join(f"{k}:{v[i]}" for k, v in profile.items())
    session = ort.InferenceSession(str(onnx_path), providers=[("TensorrtExecutionProvider", options),
                                                              "CUDAExecutionProvider", "CPUExecutionProvider"])
    if session.get_providers()[0] != "TensorrtExecutionProvider":
        raise MissingCapability(f"ONNX Runtime could not start its TensorRT provider for {onnx_path.name}")
    session.run(None, example)
    return {"route": "ort-trt", "onnx_file": onnx_path.name, "cache_dir": f"{engines_dir.name}/{ORT_TRT_DIR}",
            "fp16": fp16, "options": {k: v for k, v in options.items() if not k.endswith("_path")}}


def ort_trt_provider_options(cache_dir: Path, fp16: bool = True, workspace_gb: float = 4.0) -> dict[str, Any]:
    """Provider options of the ort-trt route: persistent engine and timing caches in `cache_dir`."""
    return {
        "trt_fp16_enable": bool(fp16),
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_max_workspace_size": int(workspace_gb * (1 << 30)),
    }
