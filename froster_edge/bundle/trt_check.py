"""Will TensorRT's ONNX parser take this graph? A static check on the CPU, no TensorRT needed.

Types come from onnx shape inference; each node is held to onnx-tensorrt's rules (release/10.1-GA):
operator and opset in `trt_ops.SUPPORTED`, listed input/output types, UINT8 only at graph inputs
and outputs, INT8 only between Q/DQ with all-zero int8 zero points, and the attribute forms the
table restricts. polygraphy's check needs TensorRT, so this one runs on every export and in the
CPU tests. Subgraphs (If/Loop/Scan bodies) are not checked: froster-edge's graphs have none.

See docs/gpu.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import FrosterError
from .trt_ops import OPSET_RANGE, SUPPORTED

_CONSTANT_INPUTS = {  # op -> input index that onnx-tensorrt needs as an initializer/constant
    "Slice": 3, "Squeeze": 1, "Unsqueeze": 1, "Pad": 3, "CumSum": 1,
    **{op: 1 for op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                        "ReduceMin", "ReduceProd", "ReduceSum", "ReduceSumSquare")},
}
_RESIZE = {
    "mode": {"nearest", "linear"},
    "coordinate_transformation_mode": {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric",
                                       "align_corners"},
    "nearest_mode": {"floor", "ceil", "round_prefer_floor", "round_prefer_ceil"},
    "keep_aspect_ratio_policy": {"stretch"},
}
MAX_LISTED = 20


@dataclass
class CompatReport:
    """The verdict on one graph: `problems` empty means TensorRT's parser should take it."""

    file: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    nodes: int = 0
    ops: list[str] = field(default_factory=list)
    rules: str = "onnx-tensorrt release/10.1-GA operators.md and parser type rules"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _type_names() -> dict[int, str]:
    from onnx import TensorProto as T

    names = {T.FLOAT: "FP32", T.FLOAT16: "FP16", T.BFLOAT16: "BF16", T.INT32: "INT32", T.INT64: "INT64",
             T.INT8: "INT8", T.UINT8: "UINT8", T.BOOL: "BOOL", T.DOUBLE: "DOUBLE", T.FLOAT8E4M3FN: "FP8"}
    if hasattr(T, "INT4"):
        names[T.INT4] = "INT4"
    return names


def check_onnx(path: str | Path) -> CompatReport:
    """Check the ONNX file at `path` (weights in external data are not read, only small constants)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    return check_model(model, path.name, path.parent)


def check_model(model, name: str = "model", base_dir: Path | None = None) -> CompatReport:
    """Check an in-memory ModelProto; `base_dir` resolves external data of Q/DQ zero points."""
    import onnx

    graph = model.graph
    problems: list[str] = []
    report = CompatReport(name, False, problems, len(graph.node), sorted({n.op_type for n in graph.node}))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or not OPSET_RANGE[0] <= opset <= OPSET_RANGE[1]:
        problems.append(f"opset {opset}: TensorRT's ONNX parser takes opsets {OPSET_RANGE[0]} to {OPSET_RANGE[1]}")
    order = _unsorted(graph)
    if order:
        problems.append(f"nodes are not topologically sorted ({order}); onnx shape inference cannot type them")
        report.problems = problems[:MAX_LISTED]
        return report
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as e:  # onnx raises its own InferenceError/ValidationError
        problems.append(f"onnx shape inference fails: {str(e).strip().splitlines()[0]}")
        report.problems = problems[:MAX_LISTED]
        return report
    g = inferred.graph
    names = _type_names()
    types = {v.name: names.get(v.type.tensor_type.elem_type, f"type {v.type.tensor_type.elem_type}")
             for v in [*g.value_info, *g.input, *g.output] if v.type.HasField("tensor_type")}
    initializers = {t.name: t for t in g.initializer}
    for t in g.initializer:
        types[t.name] = names.get(t.data_type, f"type {t.data_type}")
    constants = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    graph_io = {v.name for v in [*g.input, *g.output]}
    consumers: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for v in g.input:
        if types.get(v.name) == "DOUBLE":
            problems.append(f"graph input {v.name!r} is DOUBLE; TensorRT takes FP32/FP16 inputs")

    for node in g.node:
        where = f"{node.op_type} node {node.name or '(unnamed)'}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: domain {node.domain!r} is not ONNX's; TensorRT has no importer for it")
            continue
        if node.op_type not in SUPPORTED:
            problems.append(f"{where}: TensorRT's ONNX parser does not support {node.op_type}")
            continue
        allowed = set(SUPPORTED[node.op_type].split())
        for out in node.output:
            t = types.get(out)
            if out and t == "UINT8" and out not in graph_io:
                problems.append(f"{where}: output {out!r} is a uint8 intermediate; TensorRT takes uint8 only at "
                                "a graph input or output (cast first)")
            if out and t == "INT8" and node.op_type not in ("QuantizeLinear", "Constant"):
                problems.append(f"{where}: output {out!r} is int8 outside QuantizeLinear; TensorRT has int8 only "
                                "through quantization")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            problems += _qdq_problems(node, where, types, initializers, constants, allowed, base_dir)
        else:
            data = [node.input[0]] if node.input and node.input[0] else []
            for tensor in data + [o for o in node.output if o]:
                t = types.get(tensor)
                if t is None:
                    problems.append(f"{where}: onnx shape inference left {tensor!r} without a type")
                elif t not in allowed:
                    problems.append(f"{where}: {tensor!r} is {t}; TensorRT's {node.op_type} takes "
                                    f"{', '.join(sorted(allowed))}")
            for i in node.input:
                if types.get(i) == "INT8":
                    problems.append(f"{where}: input {i!r} is int8; only DequantizeLinear may read int8")
        problems += _form_problems(node, where, initializers, constants, consumers)
    report.problems = problems[:MAX_LISTED] + ([f"... and {len(problems) - MAX_LISTED} more"] if len(problems) > MAX_LISTED else [])
    report.passed = not problems
    return report


def _unsorted(graph) -> str:
    """'' when every node input is produced earlier (or is a graph input/initializer); else the first offender."""
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    for node in graph.node:
        missing = [i for i in node.input if i not in known]
        if missing:
            return f"{node.op_type} node {node.name!r} reads {missing[0]!r} before it is made"
        known.update(node.output)
    return ""


def _constant_values(name: str, initializers: dict, constants: dict, base_dir: Path | None):
    """The numpy value of an initializer or Constant output, or None when it is computed at run time."""
    from onnx import numpy_helper
    from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data

    tensor = initializers.get(name)
    if tensor is None and name in constants:
        attr = next((a for a in constants[name].attribute if a.name == "value"), None)
        tensor = attr.t if attr is not None else None
    if tensor is None:
        return None
    if uses_external_data(tensor):
        if base_dir is None:
            return None
        tensor = type(tensor).FromString(tensor.SerializeToString())
        load_external_data_for_tensor(tensor, str(base_dir))
    return numpy_helper.to_array(tensor)


def _qdq_problems(node, where: str, types: dict, initializers: dict, constants: dict, allowed: set,
                  base_dir: Path | None) -> list[str]:
    problems = []
    x = node.input[0]
    if types.get(x) not in allowed:
        problems.append(f"{where}: input {x!r} is {types.get(x)}; TensorRT's {node.op_type} takes "
                        f"{', '.join(sorted(allowed))}")
    scale = node.input[1] if len(node.input) > 1 else ""
    if scale and _constant_values(scale, initializers, constants, base_dir) is None:
        problems.append(f"{where}: its scale {scale!r} is computed at run time; TensorRT needs a constant scale")
    zero = node.input[2] if len(node.input) > 2 else ""
    if zero:
        if types.get(zero) == "UINT8":
            problems.append(f"{where}: uint8 zero point (asymmetric uint8 quantization); TensorRT quantizes to "
                            "symmetric int8 only (quantize with int8 activations)")
            return problems
        values = _constant_values(zero, initializers, constants, base_dir)
        if values is None:
            problems.append(f"{where}: its zero point {zero!r} is computed at run time; TensorRT needs all-zero constants")
        elif values.any():
            problems.append(f"{where}: non-zero zero point; TensorRT supports symmetric quantization only")
    return problems


def _form_problems(node, where: str, initializers: dict, constants: dict, consumers: dict) -> list[str]:
    problems = []
    attrs = {a.name: a for a in node.attribute}
    index = _CONSTANT_INPUTS.get(node.op_type)
    if index is not None and len(node.input) > index and node.input[index]:
        name = node.input[index]
        if name not in initializers and name not in constants:
            problems.append(f"{where}: its axes input {name!r} is computed at run time; TensorRT needs an initializer")
    if node.op_type == "Constant":
        bad = sorted(set(attrs) & {"sparse_value", "value_string", "value_strings"})
        if bad:
            problems.append(f"{where}: attribute {bad[0]} is not supported by TensorRT")
    if node.op_type in ("LayerNormalization", "MaxPool"):
        used = [o for o in node.output[1:] if o and consumers.get(o)]
        if used:
            problems.append(f"{where}: output {used[0]!r} is used; TensorRT imports only the first output")
    if node.op_type in ("AveragePool", "MaxPool", "LpPool") and "dilations" in attrs:
        if any(d != 1 for d in attrs["dilations"].ints):
            problems.append(f"{where}: dilations other than 1 are not supported by TensorRT")
    if node.op_type == "Resize":
        for key, ok in _RESIZE.items():
            if key in attrs and attrs[key].s.decode() not in ok:
                problems.append(f"{where}: {key} {attrs[key].s.decode()!r} is not supported by TensorRT")
        if "antialias" in attrs and attrs["antialias"].i:
            problems.append(f"{where}: antialiasing is not supported by TensorRT")
    if node.op_type == "TopK" and "sorted" in attrs and attrs["sorted"].i != 1:
        problems.append(f"{where}: TensorRT's TopK needs sorted=1")
    return problems


def require_compatible(path: str | Path) -> CompatReport:
    """The report for `path`, or FrosterError naming its first problems."""
    report = check_onnx(path)
    refuse_failed(report.to_dict())
    return report


def refuse_failed(report: dict[str, Any]) -> None:
    """FrosterError naming the first problems of a failed report (as the manifest keeps it)."""
    if not report["passed"]:
        problems = report["problems"]
        raise FrosterError(f"{report['file']} is not TensorRT-compatible: " + "; ".join(problems[:3])
                           + (f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""))
