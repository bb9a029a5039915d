"""OpenVINO compiled models over a bundle's graphs, as plain array -> array encoders (no torch).

The runtime's `ov` / `ov-int8` backends and calibrate's OpenVINO candidates open models the same
way here, so a gate measures the very code `run` uses. What is fixed on every compile:
- the inference precision hint, always explicit: OpenVINO's CPU plugin otherwise runs bf16 on
  a CPU that has it (or fp16 on some), a precision nobody gated;
- the latency hint (one request per call: a call is one batch of all streams);
- OpenVINO's compiled-model cache, in the bundle's cache folder (`engines/openvino/`, not
  hashed: a stale or deleted cache is rebuilt), so a restart loads instead of compiling.
`openvino` is imported here only, lazily: everything else works without it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import MissingCapability

INSTALL = "pip install 'froster-edge[openvino]'"
# OpenVINO's inference precision hint by froster-edge's name, and the optimisation capability a device lists for it
PRECISIONS = {"fp32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}
CACHE_DIR = "engines/openvino"


def require_openvino():
    """The openvino module, or MissingCapability with the install line."""
    try:
        import openvino
    except ImportError as e:
        raise MissingCapability(f"openvino is not installed: {INSTALL}") from e
    return openvino


def installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("openvino") is not None
    except ImportError:  # a finder that refuses it
        return False


def core(cache_dir: Path | None = None):
    """An OpenVINO Core; with `cache_dir`, compiled models are cached there."""
    ov = require_openvino()
    c = ov.Core()
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        c.set_property({"CACHE_DIR": str(cache_dir)})
    return c


def devices(c=None) -> dict[str, dict[str, Any]]:
    """Each device OpenVINO lists: its full name and optimisation capabilities (FP32, BF16, INT8...)."""
    c = c or core()
    out = {}
    for name in c.available_devices:
        info: dict[str, Any] = {}
        for key, prop in (("name", "FULL_DEVICE_NAME"), ("capabilities", "OPTIMIZATION_CAPABILITIES")):
            try:
                value = c.get_property(name, prop)
            except RuntimeError:  # a plugin that does not report it
                value = None
            info[key] = list(value) if isinstance(value, (list, tuple)) else value
        out[name] = info
    return out


def check_device(device: str, c=None) -> None:
    """MissingCapability in one line unless OpenVINO lists `device` here (AUTO: any device)."""
    c = c or core()
    listed = list(c.available_devices)
    if device == "AUTO" and listed:
        return
    if device not in listed and not any(d.split(".")[0] == device for d in listed):
        raise MissingCapability(f"OpenVINO lists no {device} device here (it has: {', '.join(listed) or 'none'})")


def reduced_precisions(device: str = "CPU", c=None) -> list[str]:
    """The reduced float precisions (bf16, fp16) the device lists among its optimisation capabilities."""
    caps = set(devices(c).get(device, {}).get("capabilities") or [])
    return [name for name, (_, cap) in PRECISIONS.items() if name != "fp32" and cap in caps]


def versions() -> dict[str, str]:
    """openvino's (and nncf's, where installed) versions, for the manifest."""
    import importlib.metadata

    out = {}
    for dist in ("openvino", "nncf"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


class OvEncoder:
    """One compiled model (one input, one output) and its infer request: (S, ...) in, float32 (S, D) out."""

    def __init__(self, model: Path | Any, device: str = "CPU", precision: str = "fp32", cache_dir: Path | None = None):
        """`model`: an .onnx or .xml path (read and cached by OpenVINO) or an in-memory ov.Model (not cached)."""
        import openvino.properties.hint as hints

        ov = require_openvino()
        if precision not in PRECISIONS:
            raise MissingCapability(f"unknown OpenVINO precision {precision!r} ({', '.join(PRECISIONS)})")
        c = core(cache_dir)
        check_device(device, c)
        config = {hints.inference_precision: getattr(ov.Type, PRECISIONS[precision][0]),
                  hints.performance_mode: hints.PerformanceMode.LATENCY}
        try:
            self.compiled = c.compile_model(str(model) if isinstance(model, Path) else model, device, config)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MissingCapability(f"OpenVINO cannot compile the model for {device} ({precision}): {first}") from e
        self.request = self.compiled.create_infer_request()
        self.device, self.precision = device, precision
        self.streams = int(self.compiled.input(0).get_shape()[0])

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        self.request.infer({0: np.ascontiguousarray(frames)})
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32)  # a copy: the next call reuses it

    def close(self) -> None:
        self.request = self.compiled = None
