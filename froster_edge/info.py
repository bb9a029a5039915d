"""What this machine has: versions of the stack and the GPUs seen (for `info` and benchmarks).

See docs/install.md.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import platform
from typing import Any

from . import __version__


def _version(module: str, dist: str | None = None) -> str:
    try:
        return importlib.metadata.version(dist or module)
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return getattr(importlib.import_module(module), "__version__", "installed")
    except ImportError:
        return "not installed"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_int8() -> str:
    """The CPU's 8-bit dot product (what INT8 agreement and speed depend on), e.g. "x86_64 avx512_vnni"."""
    from .calibration.cpu_features import detect

    return detect().describe()


def gpus() -> list[str]:
    """Names of the CUDA GPUs torch sees (empty without torch or CUDA)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [
        f"{torch.cuda.get_device_name(i)} (sm_{''.join(map(str, torch.cuda.get_device_capability(i)))})"
        for i in range(torch.cuda.device_count())
    ]


def openvino_devices() -> list[str]:
    """Each device OpenVINO lists, with its name and optimisation capabilities (empty without openvino)."""
    from .bundle import ov_sessions

    if not ov_sessions.installed():
        return []
    return [f"{dev}: {d['name']} ({' '.join(d['capabilities'] or []) or 'capabilities not reported'})"
            for dev, d in ov_sessions.devices().items()]


def environment() -> dict[str, Any]:
    """Versions and hardware, as plain data."""
    info: dict[str, Any] = {
        "froster-edge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu int8 dot product": cpu_int8(),
        "torch": _version("torch"),
        "open_clip": _version("open_clip", "open_clip_torch"),
        "onnx": _version("onnx"),
        "onnxruntime": "not installed",
        "onnxruntime providers": [],
        "openvino": _version("openvino"),
        "openvino devices": openvino_devices(),
        "tensorrt": _version("tensorrt"),
        "opencv": _version("cv2", "opencv-python-headless"),
        "gpus": gpus(),
    }
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime providers"] = ort.get_available_providers()
    except ImportError:
        pass
    return info
