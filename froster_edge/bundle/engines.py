"""TensorRT engines from the bundle's ONNX graphs, and the cache that keeps a wrong engine from loading.

An engine is valid only for its TensorRT version, GPU architecture, precision, input shapes and
ONNX file; all of those make its cache key and file name (`engines/<key>.plan`), and the manifest
records each. Engines are built from the bundle's typed ONNX (fp16 copy or QDQ INT8), as strongly
typed networks (`tensorrt` route) or through ONNX Runtime's TensorRT provider (`ort-trt`,
`engines/ort-trt/`); on 10.x a QDQ graph, or a parser that cannot type LayerNormalization, gets
the precision-flag build instead, and the record says which (`typing`). `--layernorm-fp32` lives in
the fp16 ONNX itself; one timing cache per TensorRT version serves all of a bundle's builds.
Supported: TensorRT 10.3 to 11.x. `tensorrt` is imported here only, lazily.

See docs/gpu.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BundleError, FrosterError, MissingCapability
from ..io import atomic_write_bytes

TIMING_CACHE = "timing-{version}.cache"  # one per TensorRT version: another version's cache is of no use to it
ORT_TRT_DIR = "ort-trt"
TENSORRT_RANGE = ((10, 3), (12, 0))  # supported: 10.3 <= version < 12 (pyproject's trt pins stay inside it)
PRECISIONS = ("fp32", "fp16", "int8")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """What one engine is built from and for. `precision` is the ONNX file's own (fp32 graph, fp16 copy,
    QDQ INT8 model); `shapes`: input name -> (min, opt, max) shapes."""

    name: str
    onnx_file: str
    onnx_sha256: str
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]
    precision: str = "fp16"
    layernorm_fp32: bool = False
    calibration: str = ""  # int8: what the QDQ model was calibrated on, as a digest

    def key(self, tensorrt_version: str, compute_capability: str, typing: str = "strong") -> str:
        """The cache key: changes with anything that makes an engine invalid."""
        return engine_key(tensorrt_version, compute_capability, self.precision, self.shapes, self.onnx_sha256,
                          self.layernorm_fp32, self.calibration, typing)


def engine_key(tensorrt_version: str, compute_capability: str, precision: str, shapes: dict[str, Any],
               onnx_sha256: str, layernorm_fp32: bool = False, calibration: str = "", typing: str = "strong") -> str:
    fields = {
        "tensorrt": tensorrt_version, "sm": compute_capability, "precision": precision,
        "shapes": {k: [list(s) for s in v] for k, v in sorted(shapes.items())},
        "onnx": onnx_sha256, "layernorm_fp32": bool(layernorm_fp32), "typing": typing,
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
    typing: str = "strong"
    parity: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def tensorrt_version_problem(version: str) -> str | None:
    """Why froster-edge cannot build or run with TensorRT `version` (None: it can)."""
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return f"TensorRT reports an unreadable version {version!r}"
    (lo_major, lo_minor), (hi_major, _) = TENSORRT_RANGE
    if (major, minor) < (lo_major, lo_minor) or major >= hi_major:
        return (f"TensorRT {version} is not supported: froster-edge needs TensorRT {lo_major}.{lo_minor} up to "
                f"{hi_major - 1}.x (strongly typed builds); JetPack 6 has 10.3, pip install 'froster-edge[gpu]' pins a supported one")
    return None


def require_tensorrt():
    """The tensorrt module (a supported version), or MissingCapability saying what to install."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise MissingCapability(
            "tensorrt is not installed: pip install 'froster-edge[gpu]' on an x86 GPU machine, JetPack 6 on a Jetson") from e
    problem = tensorrt_version_problem(trt.__version__)
    if problem:
        raise MissingCapability(problem)
    return trt


def cuda_runtime():
    """cuda-python's CUDA runtime module (device buffers and streams without torch), or MissingCapability."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # cuda-python before 12.6
        except ImportError as e:
            raise MissingCapability("TensorRT engines run on cuda-python's device buffers: pip install cuda-python "
                                    "(in froster-edge[gpu] and [jetson])") from e
    return cudart


def cuda_check(result: tuple, what: str, error: type[FrosterError] = FrosterError) -> Any:
    """The value of a cuda-python call's (error, value...) tuple, or `error` naming the call."""
    err, *rest = result
    if int(err) != 0:
        raise error(f"{what} failed: {getattr(err, 'name', err)} (no usable CUDA driver or GPU?)")
    return rest[0] if len(rest) == 1 else tuple(rest)


def cuda_versions(cudart) -> tuple[int | None, int | None]:
    """(runtime, driver) CUDA versions as cuda-python reports them (1000 * major + 10 * minor; driver 0: none
    installed; None: unreadable). cuda-python links its runtime in statically, so it, not the system's, must be
    no newer than the driver."""
    out = []
    for call in (cudart.cudaRuntimeGetVersion, cudart.cudaDriverGetVersion):
        err, version = call()
        out.append(int(version) if int(err) == 0 else None)
    return out[0], out[1]


def _version_text(version: int | None) -> str:
    return "unknown" if version is None else "none" if version == 0 else f"{version // 1000}.{version % 1000 // 10}"


def cuda_device() -> tuple[str, str]:
    """(name, "major.minor" compute capability: the engines' `sm`) of GPU 0 through cuda-python, or
    MissingCapability: the same query at build and at run time, so a runtime picks exactly the
    engines built for its GPU."""
    cudart = cuda_runtime()
    err, count = cudart.cudaGetDeviceCount()
    if int(err) != 0:
        runtime, driver = cuda_versions(cudart)
        if driver == 0:
            hint = "no CUDA driver is installed (no GPU here?)"
        elif runtime and driver and runtime > driver:
            hint = ("cuda-python's CUDA runtime is newer than the driver: on a Jetson pip install 'froster-edge[jetson]' "
                    "(cuda-python for JetPack 6.1/6.2's CUDA 12.6); elsewhere a cuda-python no newer than the driver, "
                    "or NVIDIA's cuda-compat package")
        else:
            hint = "no usable CUDA driver or GPU?"
        raise MissingCapability(f"cudaGetDeviceCount failed: {getattr(err, 'name', err)} (CUDA runtime "
                                f"{_version_text(runtime)}, driver {_version_text(driver)}): {hint}")
    if not count:
        raise MissingCapability("no CUDA GPU is visible: TensorRT engines must be built on the GPU that runs them")
    prop = cuda_check(cudart.cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    name = prop.name.decode(errors="replace").rstrip("\0") if isinstance(prop.name, bytes) else str(prop.name)
    return name, f"{prop.major}.{prop.minor}"


def strongly_typed_flags(trt) -> int:
    """create_network flags of a strongly typed network: the flag where the version still has it (10.x
    needs it; 11.x keeps it deprecated and ignored, since every network is strongly typed there)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


STRONG = "strong"
WEAK_FLAGS = {"int8": ("INT8", "FP16"), "fp16": ("FP16",), "fp32": ()}  # a weakly typed build's precision flags
_LAYERNORM_REFUSED = re.compile(r"setComputePrecision.*strongly.?typed|strongly.?typed.*setComputePrecision", re.I)


def weak_typing(precision: str) -> str:
    """The record's `typing` of a build with precision flags instead of a strongly typed network."""
    return "weak (flags: " + ("+".join(WEAK_FLAGS[precision]) or "none") + ")"


def build_attempts(trt, precision: str) -> list[str]:
    """The builds to try, in order: on 10.x (it has BuilderFlag.INT8) a QDQ INT8 graph is built with the
    INT8 + FP16 flags first, so that the layers left float run in fp16 rather than in the fp32 of its
    source graph; everything else strongly typed."""
    if precision == "int8" and hasattr(trt.BuilderFlag, "INT8"):
        return [weak_typing("int8"), STRONG]
    return [STRONG]


def layernorm_precision_refused(lines: list[str]) -> bool:
    """Whether a strongly typed build failed on the parser setting LayerNormalization's compute precision
    (a 10.x parser before the guard of 10.6 does; the network is then built with precision flags)."""
    return any(_LAYERNORM_REFUSED.search(line) for line in lines)


def timing_cache_path(engines_dir: Path, tensorrt_version: str) -> Path:
    return engines_dir / TIMING_CACHE.format(version=tensorrt_version)


def build_engine(onnx_path: Path, spec: EngineSpec, engines_dir: Path, workspace_gb: float = 4.0) -> EngineRecord:
    """Build (or reuse from the cache) the engine for `spec` from its typed ONNX; the timing cache of this
    TensorRT version is read and updated. The ONNX must pass the TensorRT-compatibility check first."""
    import time

    from .trt_check import require_compatible

    if spec.precision not in PRECISIONS:
        raise FrosterError(f"unknown engine precision {spec.precision!r} ({', '.join(PRECISIONS)})")
    trt = require_tensorrt()
    _, sm = cuda_device()
    attempts = build_attempts(trt, spec.precision)
    key = spec.key(trt.__version__, sm, attempts[0])
    plan = engines_dir / f"{key}.plan"
    record = EngineRecord(name=spec.name, file=f"{engines_dir.name}/{plan.name}", route="tensorrt",
                          precision=spec.precision, tensorrt=trt.__version__, sm=sm, onnx_file=spec.onnx_file,
                          onnx_sha256=spec.onnx_sha256, shapes={k: [list(s) for s in v] for k, v in spec.shapes.items()},
                          layernorm_fp32=spec.layernorm_fp32, key=key, typing=attempts[0])
    if plan.is_file():
        record.reused = True
        return record
    require_compatible(onnx_path)
    start = time.perf_counter()
    timing_path = timing_cache_path(engines_dir, trt.__version__)
    errors = []
    for typing in attempts:
        serialized, config, error, lines = _build(trt, onnx_path, spec, timing_path, workspace_gb, typing)
        if serialized is not None:
            record.typing = typing
            break
        errors.append(f"{typing}: {error}")
        fallback = weak_typing(spec.precision)
        if typing == STRONG and fallback not in attempts and layernorm_precision_refused(lines):
            log.warning("this TensorRT %s cannot set LayerNormalization's precision in a strongly typed network: "
                        "building %s with precision flags instead", trt.__version__, onnx_path.name)
            attempts.append(fallback)
    else:
        raise FrosterError(f"TensorRT could not build an engine for {onnx_path.name}: {'; '.join(errors)}")
    engines_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(plan, bytes(serialized))
    atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
    record.build_seconds = round(time.perf_counter() - start, 2)
    return record


@functools.cache
def _capturing_logger(trt):
    """A TensorRT logger that keeps the messages of a build (to read why it failed; `lines` is emptied per
    build) and passes warnings and errors on to this module's log. One per process: TensorRT keeps the
    first logger a builder was given as its global one, so that object must live as long as the process."""

    class Capture(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.lines: list[str] = []

        def log(self, severity, msg):
            self.lines.append(str(msg))
            if int(severity) <= int(trt.ILogger.Severity.WARNING):
                log.warning("TensorRT: %s", msg)

    return Capture()


def _build(trt, onnx_path: Path, spec: EngineSpec, timing_path: Path, workspace_gb: float, typing: str):
    """(serialized engine or None, builder config, why it failed, TensorRT's log lines); `typing` STRONG or
    a weak_typing(precision) build with that precision's flags."""
    logger = _capturing_logger(trt)
    logger.lines = []
    builder = trt.Builder(logger)
    network = builder.create_network(strongly_typed_flags(trt) if typing == STRONG else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i).desc()) for i in range(parser.num_errors)]
        return None, None, f"TensorRT cannot parse it: {'; '.join(errors)}", logger.lines + errors
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    if typing != STRONG:
        for flag in WEAK_FLAGS[spec.precision]:
            config.set_flag(getattr(trt.BuilderFlag, flag))
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)  # a cache from another GPU is ignored, not fatal
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in spec.shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    why = "" if serialized is not None else "the build failed (see the TensorRT log above)"
    return serialized, config, why, logger.lines


class TensorRTEngine:
    """One static-shape engine (one input, one output) run with the tensor-name API on cuda-python
    device buffers and stream, no torch: the runner of export's and calibrate's gates and of the
    runtime's trt backends, so a gate measures the very code `run` uses.

    As in TensorRT's own samples (samples/python/common_runtime.py): buffers from cudaMalloc, the
    addresses bound once with `set_tensor_address`, then per call cudaMemcpyAsync in,
    `execute_async_v3(stream)`, cudaMemcpyAsync out and a stream synchronisation.
    """

    def __init__(self, plan: Path):
        import numpy as np

        trt, cudart = require_tensorrt(), cuda_runtime()
        self._cudart, self._np = cudart, np
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan.read_bytes())
        if engine is None:
            raise BundleError(f"{plan} cannot be loaded by this TensorRT/GPU: rebuild with froster-edge export --trt")
        self.engine, self.context = engine, engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        (self.input,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        (self.output,) = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        in_shape = tuple(engine.get_tensor_shape(self.input))
        self.context.set_input_shape(self.input, in_shape)
        self.in_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input)))
        self.host_out = np.empty(tuple(self.context.get_tensor_shape(self.output)),
                                 np.dtype(trt.nptype(engine.get_tensor_dtype(self.output))))
        self.in_bytes = int(np.prod(in_shape)) * self.in_dtype.itemsize
        self.streams = int(in_shape[0])
        self.d_in = cuda_check(cudart.cudaMalloc(self.in_bytes), "cudaMalloc")
        self.d_out = cuda_check(cudart.cudaMalloc(self.host_out.nbytes), "cudaMalloc")
        self.stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.context.set_tensor_address(self.input, int(self.d_in))
        self.context.set_tensor_address(self.output, int(self.d_out))

    def __call__(self, frames):
        """(streams, ...) input as the engine takes it -> its output as float32 (a fresh array)."""
        cudart = self._cudart
        x = self._np.ascontiguousarray(frames, dtype=self.in_dtype)
        if x.nbytes != self.in_bytes:
            raise FrosterError(f"the engine takes {self.in_bytes} input bytes, got {x.nbytes} (shape {x.shape})")
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(cudart.cudaMemcpyAsync(self.d_in, x.ctypes.data, x.nbytes, h2d, self.stream), "cudaMemcpyAsync")
        if not self.context.execute_async_v3(int(self.stream)):
            raise FrosterError("TensorRT execution failed")
        cuda_check(cudart.cudaMemcpyAsync(self.host_out.ctypes.data, self.d_out, self.host_out.nbytes, d2h, self.stream),
                   "cudaMemcpyAsync")
        cuda_check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")  # a timer stops after this
        return self.host_out.astype(self._np.float32)  # a copy: the next call reuses host_out

    def close(self) -> None:
        """Free the device buffers and the stream (idempotent)."""
        if self.context is None:
            return
        cudart = self._cudart
        for ptr in (self.d_in, self.d_out):
            cudart.cudaFree(ptr)
        cudart.cudaStreamDestroy(self.stream)
        self.context = self.engine = None

    def __enter__(self) -> "TensorRTEngine":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def ort_trt_session(onnx_path: Path, cache_dir: Path, workspace_gb: float = 4.0, log_severity: int = 3):
    """An ONNX Runtime session with the TensorRT provider first (its engine cache in `cache_dir`), then
    CUDA and the CPU for whatever TensorRT does not take; MissingCapability when TensorRT cannot start."""
    import onnxruntime as ort

    from .sessions import preload_gpu_libraries

    if "TensorrtExecutionProvider" not in ort.get_available_providers():
        raise MissingCapability(
            "ONNX Runtime has no TensorrtExecutionProvider here: install onnxruntime-gpu with TensorRT 10 libraries")
    try:  # the pip wheel's TensorRT libraries are not on the loader path; importing tensorrt loads them
        import tensorrt  # noqa: F401
    except ImportError:
        pass  # JetPack and system installs are on the loader path already
    preload_gpu_libraries()  # and CUDA/cuDNN for its CUDA fallback and TensorRT itself
    cache_dir.mkdir(parents=True, exist_ok=True)
    so = ort.SessionOptions()
    so.log_severity_level = log_severity  # ORT's warnings about nodes placed on the CPU are not ours to print
    providers = [("TensorrtExecutionProvider", ort_trt_provider_options(cache_dir, workspace_gb)),
                 "CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(onnx_path), so, providers=providers)
    except Exception as e:  # ORT raises its own types for missing CUDA/TensorRT libraries
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MissingCapability(f"ONNX Runtime cannot start TensorrtExecutionProvider on {onnx_path.name}: {first}") from e
    if session.get_providers()[0] != "TensorrtExecutionProvider":
        raise MissingCapability(f"ONNX Runtime could not start its TensorRT provider for {onnx_path.name} "
                                f"(it fell back to {session.get_providers()[0]}): its TensorRT libraries are missing or do not match")
    return session


def ort_trt_provider_options(cache_dir: Path, workspace_gb: float = 4.0) -> dict[str, Any]:
    """Provider options of the ort-trt route: persistent engine and timing caches in `cache_dir`, and the
    fp16 flag off, so precision comes from the typed ONNX (ONNX Runtime then builds strongly typed)."""
    return {
        "trt_fp16_enable": False,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache_dir),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache_dir),
        "trt_max_workspace_size": int(workspace_gb * (1 << 30)),
    }


def slow_engine_warning(ort_trt_ms: float, ort_cuda_ms: float | None, onnxruntime_version: str) -> str | None:
    """Why an ort-trt engine that is no faster than ONNX Runtime's CUDA provider on the same graph is suspect
    (None: it is faster, or there was nothing to compare with). ONNX Runtime 1.27 and later may have its
    TensorRT provider build a weakly typed network, which can run an fp16 graph slower than CUDA does."""
    if ort_cuda_ms is None or ort_trt_ms < ort_cuda_ms:
        return None
    return (f"ort-trt is no faster than ort-cuda here ({ort_trt_ms:.2f} vs {ort_cuda_ms:.2f} ms a call, ONNX Runtime "
            f"{onnxruntime_version}): its TensorRT provider may have built a weakly typed engine; "
            "export --trt --trt-route tensorrt builds a strongly typed one")


def ort_trt_speed(trt_session, cuda_session, frames, reps: int = 10) -> dict[str, Any]:
    """ms a call of the ort-trt session and, where one could be opened, of an ort-cuda session on the same
    graph (`cuda_session` None: none), timed interleaved on `frames`; with the warning when ort-trt is not faster."""
    import onnxruntime as ort

    from ..calibration.gate import interleaved_median_ms

    name = trt_session.get_inputs()[0].name
    calls = {"ort-trt": lambda: trt_session.run(None, {name: frames})}
    if cuda_session is not None:
        calls["ort-cuda"] = lambda: cuda_session.run(None, {name: frames})
    ms = interleaved_median_ms(calls, reps)
    trt_ms, cuda_ms = ms["ort-trt"], ms.get("ort-cuda")
    return {"ort_trt_ms": round(trt_ms, 3), "ort_cuda_ms": None if cuda_ms is None else round(cuda_ms, 3),
            "speedup_vs_ort_cuda": None if cuda_ms is None else round(cuda_ms / trt_ms, 3), "reps": reps,
            "onnxruntime": ort.__version__, "warning": slow_engine_warning(trt_ms, cuda_ms, ort.__version__)}
