"""INT8 post-training quantization of the video encoder with ONNX Runtime (static QDQ or dynamic).

Only the weight MatMuls and the patch Conv are quantized (per-channel weights); LayerNorm,
Softmax, the attention products and the final projection stay float, where 8 bits cost the most
agreement (`ops="all"` quantizes everything, for comparison). `target="onnxruntime"` builds the
QGemm form (float outputs, int32 bias); `target="tensorrt"` the plain QDQ form TensorRT fuses.
Activation ranges are cached in JSON keyed by the fp32 model's sha256, the clips, the method and
the pre-processing, so every variant reuses one calibration; an onnxruntime whose `quantize_static`
lacks `calibration_cache_path` calibrates anew and gives the same model.

See docs/calibration.md.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from pathlib import Path
from typing import Iterator, Literal

import numpy as np

from ..bundle.manifest import CALIBRATION_CACHE_PREFIX, sha256_file
from ..errors import ConfigError
from ..logs import quiet_logger
from .variants import Variant
from .variants import variant as variant_named

Method = Literal["minmax", "entropy", "percentile"]
OpsChoice = Literal["linear", "all"]
Target = Literal["onnxruntime", "tensorrt"]

log = logging.getLogger(__name__)


def caches_ranges() -> bool:
    """Whether this onnxruntime's `quantize_static` can keep calibration ranges in a file (1.24 and later)."""
    from onnxruntime.quantization import quantize_static

    return "calibration_cache_path" in inspect.signature(quantize_static).parameters


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


def cache_name(onnx_sha: str, clips_digest: str, method: str, preprocess: bool) -> str:
    key = hashlib.sha256(f"{onnx_sha}|{clips_digest}|{method}|{preprocess}".encode()).hexdigest()[:20]
    return f"{CALIBRATION_CACHE_PREFIX}{key}.json"


def quantize_video_encoder(fp32_path: Path, out_path: Path, clips: np.ndarray, streams: int, cache_dir: Path,
                           clips_digest: str, method: Method = "minmax", ops: OpsChoice = "linear",
                           variant: Variant | str = "s8s8", target: Target = "onnxruntime") -> dict:
    """Write the INT8 model for `target` to `out_path`; returns what was done (for the manifest).

    A dynamic variant (ONNX Runtime only) ignores the clips, the method and the cache (it has no
    static ranges); with `attention` it also quantizes the attention products of two activations
    (both per call).
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    if len(clips) < streams:
        raise ConfigError(f"{len(clips)} calibration clips cannot fill one call of {streams} streams")
    v = variant_named(variant) if isinstance(variant, str) else variant
    if target == "tensorrt" and v.dynamic:
        raise ConfigError(f"{v.name} quantizes per call, which only ONNX Runtime runs; TensorRT needs s8s8 or s8s8-7bit")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    source = fp32_path
    float_output = preprocess = target == "onnxruntime" and not v.dynamic
    if preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        source = out_path.with_name(out_path.name + ".pre.onnx")
        # symbolic shape inference cannot follow the neighbour-attention reshapes; ONNX's own can
        quant_pre_process(str(fp32_path), str(source), skip_symbolic_shape=True)
    model = onnx.load(str(source), load_external_data=False)
    input_name = model.graph.input[0].name
    nodes, projection = linear_nodes(model)
    to_quantize = [n for n in nodes if n != projection] if ops == "linear" else None
    cache, hit = None, None
    if v.dynamic:  # the weight layers (and with `attention` the other MatMuls but the projection)
        products = [n.name for n in model.graph.node if n.op_type == "MatMul" and n.name not in nodes]
        dynamic_nodes = (to_quantize + (products if v.attention else [])) if ops == "linear" else None
        with quiet_logger():
            quantize_dynamic(str(source), str(out_path), per_channel=True, reduce_range=v.reduce_range,
                             weight_type=QuantType.QUInt8 if v.weights == "uint8" else QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Conv"], nodes_to_quantize=dynamic_nodes,
                             extra_options={"MatMulConstBOnly": not (v.attention or ops == "all")})
        to_quantize = dynamic_nodes
    else:
        if caches_ranges():
            cache = cache_dir / cache_name(sha256_file(fp32_path), clips_digest, method, preprocess)
            hit = cache.is_file()
        else:
            import onnxruntime

            log.warning("onnxruntime %s cannot keep calibration ranges in a file (1.24 can): calibrating anew",
                        onnxruntime.__version__)
        _quantize_static(source, out_path, clips, streams, input_name, v, to_quantize, method, cache, float_output)
    if source != fp32_path:
        source.unlink()
    route = "onnxruntime-dynamic" if v.dynamic else "onnxruntime-qdq"
    layers = ("DynamicQuantizeMatMul: range, integer GEMM, bias, float out" if v.dynamic else
              "QGemm: integer GEMM, bias, float out" if float_output else "plain QDQ: output requantized to 8 bits")
    return {"route": route, "target": target, "linear_layers": layers,
            "method": "dynamic (per call)" if v.dynamic else method, "ops": ops, "variant": v.name,
            "activation": v.activation + (", dynamic per-tensor range" if v.dynamic else ""), "preprocess": preprocess,
            "weights": f"{v.weights} per-channel" + (", 7-bit (reduce_range)" if v.reduce_range else ""),
            "quantized_nodes": len(to_quantize) if to_quantize is not None else "all",
            "float_kept": ([] if ops == "all" else ["LayerNormalization", "Softmax", "final projection"]
                           + ([] if v.attention else ["attention products"])),
            "calibration_clips": 0 if v.dynamic else int(len(clips)), "cache": cache.name if cache else None, "cache_hit": hit}


def _quantize_static(source: Path, out_path: Path, clips: np.ndarray, streams: int, input_name: str, v: Variant,
                     to_quantize: list[str] | None, method: str, cache: Path | None, float_output: bool) -> None:
    """ONNX Runtime's static QDQ quantization from the cached (or freshly calibrated) activation ranges
    (`cache` None: calibrated, not kept); `float_output`: the Gemms' outputs are left float (only their
    inputs and bias quantized)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    reader = type("ClipReader", (_ClipReader, CalibrationDataReader), {})(clips, streams, input_name)
    with quiet_logger():  # ORT advises pre-processing through the root logger on every call
        quantize_static(
            str(source), str(out_path), reader,
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8 if v.activation == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QUInt8 if v.weights == "uint8" else QuantType.QInt8,
            reduce_range=v.reduce_range,
            nodes_to_quantize=to_quantize,
            calibrate_method={"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                              "percentile": CalibrationMethod.Percentile}[method],
            extra_options={"ActivationSymmetric": v.activation == "int8", "WeightSymmetric": True,
                           "OpTypesToExcludeOutputQuantization": ["Gemm"] if float_output else []},
            **({"calibration_cache_path": str(cache)} if cache is not None else {}),
        )
