"""INT8 post-training quantization of the video encoder with ONNX Runtime (QDQ), for CPUs.

What gets quantized, and why: the weight MatMuls (every linear layer of the ViT and the patch
Conv), per-channel weights. LayerNorm, Softmax, the attention products of two activations and
the final projection to the embedding stay float: they are where 8 bits cost the most agreement
(the score a label table ranks on is the direction of the final embedding), and they are a
small share of the time. `ops="all"` quantizes everything ONNX Runtime can, for comparison.
Activations are asymmetric uint8 on x86 (faster there: measured-facts.md) and symmetric int8 on
ARM (what ARM kernels prefer); weights are int8.

The activation ranges come from calibration clips and are kept in a JSON cache whose name
carries the fp32 model's sha256, the clips' digest, the method and the options, so a rebuild
with the same inputs reads the ranges instead of running calibration again, and gives the
same model.
"""

from __future__ import annotations

import hashlib
import inspect
import platform
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from ..errors import ConfigError, MissingCapability
from ..bundle.manifest import sha256_file
from ..logs import quiet_logger

Method = Literal["minmax", "entropy", "percentile"]
OpsChoice = Literal["linear", "all"]


def default_activation_type() -> str:
    return "int8" if platform.machine().lower() in ("aarch64", "arm64") else "uint8"


def linear_nodes(model) -> tuple[list[str], str | None]:
    """Names of the MatMul/Gemm/Conv nodes that multiply by a weight, and the final projection's name.

    The final projection is the last weight MatMul in topological order (ONNX graphs are sorted).
    """
    weights = {t.name for t in model.graph.initializer}
    constants = {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names = [n.name for n in model.graph.node
             if n.op_type in ("MatMul", "Gemm", "Conv") and any(i in weights or i in constants for i in n.input[1:2])]
    return names, (names[-1] if names else None)


class _ClipReader:
    """ONNX Runtime's calibration reader protocol over uint8 clips, `streams` at a time."""

    def __init__(self, clips: np.ndarray, streams: int, input_name: str):
        self.batches = [clips[i:i + streams] for i in range(0, len(clips) - streams + 1, streams)]
        self.input_name = input_name
        self._it: Iterator[np.ndarray] = iter(self.batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._it, None)
        return None if batch is None else {self.input_name: batch}

    def rewind(self) -> None:
        self._it = iter(self.batches)


def cache_name(onnx_sha: str, clips_digest: str, method: str, ops: str, activation: str, preprocess: bool) -> str:
    key = hashlib.sha256(f"{onnx_sha}|{clips_digest}|{method}|{ops}|{activation}|{preprocess}".encode()).hexdigest()[:20]
    return f"ort-int8-ranges-{key}.json"


def quantize_video_encoder(fp32_path: Path, out_path: Path, clips: np.ndarray, streams: int, cache_dir: Path,
                           clips_digest: str, method: Method = "minmax", ops: OpsChoice = "linear",
                           activation: str | None = None, preprocess: bool = False) -> dict:
    """Write the QDQ INT8 model to `out_path`; returns what was done (for the manifest).

    `preprocess` runs ONNX Runtime's quantization pre-processing first (graph optimisation that
    fuses MatMul + Add into Gemm), which quantizes each linear layer as one op.
    """
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise MissingCapability("this onnxruntime cannot cache calibration ranges: install onnxruntime >= 1.24")
    if len(clips) < streams:
        raise ConfigError(f"{len(clips)} calibration clips cannot fill one call of {streams} streams")
    activation = activation or default_activation_type()
    if activation not in ("uint8", "int8"):
        raise ConfigError(f"activation type must be uint8 or int8, not {activation!r}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    source = fp32_path
    if preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        source = out_path.with_name(out_path.name + ".pre.onnx")
        # symbolic shape inference cannot follow the neighbour-attention reshapes; ONNX's own can
        quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
    model = onnx.load(str(source), load_external_data=False)
    input_name = model.graph.input[0].name
    nodes, projection = linear_nodes(model)
    to_quantize = [n for n in nodes if n != projection] if ops == "linear" else None
    cache = cache_dir / cache_name(sha256_file(fp32_path), clips_digest, method, ops, activation, preprocess)
    hit = cache.is_file()
    reader = type("ClipReader", (_ClipReader, CalibrationDataReader), {})(clips, streams, input_name)
    with quiet_logger():  # ORT advises pre-processing through the root logger on every call
        quantize_static(
            str(source), str(out_path), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8 if activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_quantize=to_quantize,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            extra_options={"ActivationSymmetric": activation == "int8", "WeightSymmetric": True},
            calibration_cache_path=str(cache),
        )
    if source != fp32_path:
        source.unlink()
    return {"route": "onnxruntime-qdq", "method": method, "ops": ops, "activation": activation, "preprocess": preprocess,
            "weights": "int8 per-channel",
            "quantized_nodes": len(to_quantize) if to_quantize is not None else "all",
            "float_kept": ["LayerNormalization", "Softmax", "attention products", "final projection"] if ops == "linear" else [],
            "calibration_clips": int(len(clips)), "cache": cache.name, "cache_hit": hit}
