"""TensorRT INT8: a calibrator that feeds the runtime's own clips, and its cache file.

Entropy (`IInt8EntropyCalibrator2`, TensorRT's default for CNN/ViT activations) or min-max
(`IInt8MinMaxCalibrator`, often better when outliers matter) is selectable. The calibrator
writes TensorRT's calibration table beside the engines, named by the fp32 ONNX hash and the
clips' digest, so a rebuild of the same model on the same data reads it instead of calibrating
again. The engine itself is int8 + fp16 mixed and goes through `bundle.engines`, which
keys it by TensorRT version, GPU, shapes, ONNX hash and this calibration. tensorrt and torch
(for device buffers, at export time only) are imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle.engines import require_tensorrt


def make_calibrator(clips: np.ndarray, streams: int, cache_file: Path, method: str = "entropy"):
    """A TensorRT IInt8 calibrator over uint8 clips (N, T, S, S, 3), `streams` per batch."""
    import torch

    trt = require_tensorrt()
    base = {"entropy": trt.IInt8EntropyCalibrator2, "minmax": trt.IInt8MinMaxCalibrator}.get(method)
    if base is None:
        raise ValueError(f"TensorRT calibration method must be entropy or minmax, not {method!r}")

    class ClipCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.batches = [clips[i:i + streams] for i in range(0, len(clips) - streams + 1, streams)]
            self.index = 0
            self.device = None

        def get_batch_size(self) -> int:
            return streams

        def get_batch(self, names):  # noqa: ARG002 - TensorRT's signature
            if self.index >= len(self.batches):
                return None
            self.device = torch.from_numpy(np.ascontiguousarray(self.batches[self.index])).cuda()
            self.index += 1
            return [int(self.device.data_ptr())]

        def read_calibration_cache(self):
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache) -> None:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            cache_file.write_bytes(bytes(cache))

    return ClipCalibrator()
