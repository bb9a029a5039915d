"""Video-encoder backends behind one interface: uint8 clips [S, T, H, W, 3] in, embeddings [S, D] out.

trt (a TensorRT engine matching this machine's TensorRT and GPU, via cuda-python), ort-trt (ONNX
Runtime's TensorRT provider with the bundle's engine cache), ort-cuda, ort-cpu, ov (OpenVINO on
`ov_device`, fp32 or the precision `calibrate` kept, compiled models cached in engines/openvino/),
trt-int8, ort-cpu-int8 and ov-int8 (only where `calibrate` kept them), torch (the reference, the only
one importing torch). `auto` takes the first available of trt-int8 > trt > ort-trt > ort-cuda > the
CPU model calibrate kept (ort-cpu-int8, ov-int8 or ov) > ort-cpu and says why it passed the others;
it picks ort-trt only with a built cache, never starting a build. Files are hashed against the
manifest before loading; an asked-for backend the machine cannot run is MissingCapability (exit 3).

See docs/runtime.md and docs/openvino.md.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..bundle import manifest as mf
from ..bundle.engines import TensorRTEngine, cuda_device
from ..bundle.ov_sessions import CACHE_DIR as OV_CACHE_DIR
from ..bundle.ov_sessions import INSTALL as OV_INSTALL
from ..bundle.ov_sessions import OvEncoder
from ..bundle.ov_sessions import installed as ov_installed
from ..bundle.sessions import preload_gpu_libraries
from ..calibration.cpu_features import detect as detect_cpu
from ..calibration.cpu_features import gated_elsewhere
from ..errors import BundleError, FrosterError, MissingCapability
from .options import AUTO_ORDER

log = logging.getLogger(__name__)


class Backend(Protocol):
    name: str
    streams: int  # clips per call, fixed by the exported graph or engine
    detail: str  # what runs: file, provider, precision

    def __call__(self, frames: np.ndarray) -> np.ndarray: ...  # (S, T, H, W, 3) uint8 -> (S, D) float32

    def close(self) -> None: ...


@dataclass
class Opened:
    backend: Backend
    passed_over: dict[str, str]  # auto: faster backends and why they were not used
    warmup_s: float


def ort_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return ort.get_available_providers()


def video_engine(manifest: dict[str, Any], tensorrt_version: str, sm: str, precision: str = "fp16") -> dict[str, Any]:
    """The manifest's TensorRT video engine of `precision` for this TensorRT version and GPU, or MissingCapability."""
    engines = [e for e in manifest.get("engines", []) if e.get("route") == "tensorrt" and e.get("name") == "video_encoder"
               and e.get("precision", "fp16") == precision]
    for e in engines:
        if e.get("tensorrt") == tensorrt_version and e.get("sm") == sm:
            return e
    have = ", ".join(f"TensorRT {e.get('tensorrt')} sm {e.get('sm')}" for e in engines) or "none"
    how = "froster-edge calibrate --trt" if precision == "int8" else "froster-edge export --trt"
    raise MissingCapability(f"the bundle has no TensorRT {precision} video engine for this machine (TensorRT {tensorrt_version}, "
                            f"sm {sm}; the bundle has: {have}): build one with {how} on this machine")


def kept_backend(manifest: dict[str, Any]) -> str | None:
    """The backend of the CPU model `froster-edge calibrate` kept (ort-cpu-int8, ov-int8 or ov), or None."""
    section = manifest.get("int8") or {}
    return section.get("backend", "ort-cpu-int8") if section.get("file") else None


def int8_model(manifest: dict[str, Any]) -> str | None:
    """The INT8 ONNX file `froster-edge calibrate` kept for ONNX Runtime (it passed the gate, or was forced)."""
    return manifest["int8"]["file"] if kept_backend(manifest) == "ort-cpu-int8" else None


def auto_order(manifest: dict[str, Any]) -> tuple[str, ...]:
    """AUTO_ORDER with the CPU slot taken by the backend of the model calibrate kept."""
    kept = kept_backend(manifest) or "ort-cpu-int8"
    return tuple(kept if name == "ort-cpu-int8" else name for name in AUTO_ORDER)


class OrtBackend:
    """An ONNX Runtime session on the video graph, with the provider it was asked for (or an error)."""

    def __init__(self, name: str, path: Path, provider: str, manifest: dict[str, Any], session=None):
        """`session`: one already opened (ort-trt's, with its provider chain); else one on `provider` (+ CPU)."""
        import onnxruntime as ort

        video = manifest["onnx"]["video_encoder"]
        if session is None:
            if provider != "CPUExecutionProvider":
                preload_gpu_libraries()
            so = ort.SessionOptions()
            so.log_severity_level = 3  # ORT's warnings about nodes placed on the CPU are not ours to print
            providers = [provider] + (["CPUExecutionProvider"] if provider != "CPUExecutionProvider" else [])
            try:
                session = ort.InferenceSession(str(path), so, providers=providers)
            except Exception as e:  # ORT raises its own types for missing CUDA/TensorRT libraries
                raise MissingCapability(f"ONNX Runtime cannot start {provider} on {path.name}: "
                                        f"{str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from e
            got = session.get_providers()[0]
            if got != provider:
                raise MissingCapability(f"ONNX Runtime could not start {provider} (it fell back to {got}): "
                                        "its CUDA libraries are missing or do not match")
        self.session = session
        self.name, self.input, self.output = name, video["input"], video["output"]
        self.streams = int(manifest["preprocessing"]["streams"])
        self.detail = f"{path.name} on {provider}"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        return self.session.run([self.output], {self.input: frames})[0].astype(np.float32, copy=False)

    def close(self) -> None:
        self.session = None


class OvBackend(OvEncoder):
    """An OpenVINO compiled model of the bundle (bundle.ov_sessions.OvEncoder), batched over streams like ort-cpu."""

    def __init__(self, name: str, bundle: Path, file: str, device: str, precision: str):
        super().__init__(bundle / file, device, precision, bundle / OV_CACHE_DIR)
        self.name = name
        self.detail = f"{file} on OpenVINO {device} ({precision})"


class TrtBackend(TensorRTEngine):
    """A TensorRT engine of the bundle (bundle.engines.TensorRTEngine: cuda-python buffers, no torch)."""

    def __init__(self, plan: Path, record: dict[str, Any]):
        super().__init__(plan)
        self.name = "trt"
        self.detail = f"{record['file']} ({record['precision']}, TensorRT {record['tensorrt']}, sm {record['sm']})"


class TorchBackend:
    """The reference: the student itself, in eager torch, verified to be the bundle's model."""

    def __init__(self, bundle: Path, manifest: dict[str, Any]):
        try:
            import torch
        except ImportError as e:
            raise MissingCapability("the torch backend needs torch and open_clip: pip install 'froster-edge[train]'") from e
        from ..config import saved_student_config
        from ..export.reference import torch_video_encoder
        from ..model.checkpoint import load_student, model_fingerprint
        from ..model.factory import create_student

        model = manifest["model"]
        source = model.get("source") or {}
        if "student" in source:
            student = load_student(source["student"])
        elif source.get("pretrained"):
            student = create_student(saved_student_config(model["student"]))
        else:
            raise BundleError(f"{bundle}: the manifest does not say where its model came from (model.source is "
                              f"{source or 'empty'}), so the torch backend cannot rebuild it")
        if model_fingerprint(student) != model["fingerprint"]:
            raise BundleError(f"the torch backend rebuilt the model from {source}, but its weights are not the bundle's "
                              f"(fingerprint {model_fingerprint(student)[:12]} vs {model['fingerprint'][:12]})")
        pre = manifest["preprocessing"]
        from dataclasses import replace

        student.config = replace(student.config, num_frames=int(pre["num_frames"]))
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self._encode = torch_video_encoder(student.to(device).eval())
        self._sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        self.name, self.streams = "torch", int(pre["streams"])
        self.detail = f"eager torch {torch.__version__} on {device}, fp32"

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        out = self._encode(np.ascontiguousarray(frames))
        self._sync()
        return out

    def close(self) -> None:
        self._encode = None


def probe(name: str, bundle: Path, manifest: dict[str, Any]) -> str | None:
    """Why `name` cannot run here (None: it can be tried). Cheap: nothing is loaded."""
    providers = ort_providers()
    if name in ("trt", "trt-int8"):
        try:
            import tensorrt as trt
        except ImportError:
            return "tensorrt is not installed"
        from ..bundle.engines import tensorrt_version_problem

        problem = tensorrt_version_problem(trt.__version__)
        if problem:
            return problem
        try:
            _, sm = cuda_device()
            video_engine(manifest, trt.__version__, sm, "int8" if name == "trt-int8" else "fp16")
        except (FrosterError, RuntimeError, OSError) as e:  # any CUDA error passes the backend over, with its reason
            return str(e)
        return None
    if name == "ort-trt":
        if "TensorrtExecutionProvider" not in providers:
            return "ONNX Runtime has no TensorrtExecutionProvider (install onnxruntime-gpu with TensorRT)"
        return None
    if name == "ort-cuda":
        return None if "CUDAExecutionProvider" in providers else "ONNX Runtime has no CUDAExecutionProvider (install onnxruntime-gpu)"
    if name == "ort-cpu-int8" and int8_model(manifest) is None:
        return "the bundle has no INT8 model (froster-edge calibrate keeps one where it pays)"
    if name in ("ort-cpu", "ort-cpu-int8"):
        return None if "CPUExecutionProvider" in providers else "onnxruntime is not installed"
    if name in ("ov", "ov-int8"):
        if not ov_installed():
            return f"openvino is not installed: {OV_INSTALL}"
        if name == "ov-int8" and kept_backend(manifest) != "ov-int8":
            return "the bundle has no OpenVINO INT8 model (froster-edge calibrate keeps one where it is the fastest that passes)"
        return None
    if name == "torch":
        import importlib.util

        return None if importlib.util.find_spec("torch") else "torch is not installed"
    raise FrosterError(f"unknown backend {name!r}")


def _ort_trt_record(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The video engine cache `export --trt-route ort-trt` built and gated (it names its ONNX file)."""
    return next((e for e in manifest.get("engines", []) if e.get("route") == "ort-trt"
                 and e.get("name", "video_encoder") == "video_encoder" and e.get("onnx_file")), None)


def _load(name: str, bundle: Path, manifest: dict[str, Any], ov_device: str = "CPU") -> Backend:
    reason = probe(name, bundle, manifest)
    if reason:
        raise MissingCapability(f"backend {name} is not available here: {reason}")
    video = manifest["onnx"]["video_encoder"]
    if name in ("trt", "trt-int8"):
        import tensorrt as trt

        record = video_engine(manifest, trt.__version__, cuda_device()[1], "int8" if name == "trt-int8" else "fp16")
        mf.verify_bundle(bundle, [record["file"]])
        return TrtBackend(bundle / record["file"], record)
    if name == "ort-trt":
        from ..bundle.engines import ORT_TRT_DIR, ort_trt_session

        record = _ort_trt_record(manifest)
        cache = bundle / (record["cache_dir"] if record else f"{mf.ENGINES_DIR}/{ORT_TRT_DIR}")
        file = record["onnx_file"] if record else (video.get("fp16_file") or video["file"])
        if record is None:
            log.info(f"ort-trt: the bundle has no engine cache; ONNX Runtime builds one into {cache} now (minutes on a Jetson)")
        elif (record.get("speed") or {}).get("warning"):
            log.warning(record["speed"]["warning"])
        mf.verify_bundle(bundle, [file])
        session = ort_trt_session(bundle / file, cache)
        return OrtBackend(name, bundle / file, "TensorrtExecutionProvider", manifest, session)
    if name == "ort-cuda":
        file = video.get("fp16_file") or video["file"]
        mf.verify_bundle(bundle, [file])
        return OrtBackend(name, bundle / file, "CUDAExecutionProvider", manifest)
    if name in ("ort-cpu", "ort-cpu-int8"):
        file = int8_model(manifest) if name == "ort-cpu-int8" else video["file"]
        mf.verify_bundle(bundle, [file])
        if name == "ort-cpu-int8":
            warning = gated_elsewhere(manifest["int8"].get("cpu"), detect_cpu())
            if warning:
                log.info(warning)
        return OrtBackend(name, bundle / file, "CPUExecutionProvider", manifest)
    if name in ("ov", "ov-int8"):
        return _load_ov(name, bundle, manifest, ov_device)
    return TorchBackend(bundle, manifest)


def _load_ov(name: str, bundle: Path, manifest: dict[str, Any], device: str) -> OvBackend:
    """`ov`: the fp32 ONNX at fp32, or at the precision calibrate kept for this device; `ov-int8`: the kept IR."""
    section = manifest.get("int8") or {}
    kept = kept_backend(manifest) == name and section.get("device", "CPU") == device
    files = (section.get("files") or [section["file"]]) if name == "ov-int8" else [manifest["onnx"]["video_encoder"]["file"]]
    precision = section.get("precision", "fp32") if kept else "fp32"
    mf.verify_bundle(bundle, files)
    if kept and device == "CPU":
        warning = gated_elsewhere(section.get("cpu"), detect_cpu())
    elif name == "ov-int8" and not kept:
        warning = f"ov-int8: the OpenVINO model was gated on {section.get('device', 'CPU')}, not on {device}: it runs at fp32 here"
    else:
        warning = None
    if warning:
        log.warning(warning)
    return OvBackend(name, bundle, files[0], device, precision)


def open_backend(name: str, bundle: Path, manifest: dict[str, Any], ov_device: str = "CPU") -> Opened:
    """Load `name` (or the fastest available for "auto"), warm it up on one zero batch, and return it.
    `ov_device`: the OpenVINO device of the ov backends (MissingCapability where OpenVINO does not list it)."""
    passed: dict[str, str] = {}
    if name == "auto":
        backend = None
        for candidate in auto_order(manifest):
            reason = probe(candidate, bundle, manifest)
            if reason is None and candidate == "ort-trt" and _ort_trt_record(manifest) is None:
                reason = "the bundle has no ort-trt engine cache (export --trt --trt-route ort-trt builds one)"
            if reason is None:
                try:
                    backend = _load(candidate, bundle, manifest, ov_device)
                    break
                except MissingCapability as e:
                    reason = str(e)
            passed[candidate] = reason
        if backend is None:
            raise MissingCapability("no backend can run here: " + "; ".join(f"{k}: {v}" for k, v in passed.items()))
    else:
        backend = _load(name, bundle, manifest, ov_device)
    shape = manifest["preprocessing"]["input"]["shape"]
    t = time.perf_counter()
    backend(np.zeros(shape, np.uint8))  # first calls allocate, autotune or build: keep them out of the stats
    return Opened(backend, passed, time.perf_counter() - t)
