"""The static TensorRT-compatibility check: hand-built graphs with known verdicts, and the real exports.

The rules come from onnx-tensorrt (release/10.1-GA): its operator table, uint8 only at graph I/O,
int8 only through symmetric Q/DQ, constant `axes`. The exported graphs must pass; the video graph
as it was before the cast-first fix (a Transpose on the uint8 frames) must fail.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from froster_edge.bundle.engines import tensorrt_version_problem
from froster_edge.bundle.trt_check import check_model, check_onnx, require_compatible
from froster_edge.errors import FrosterError
from froster_edge.export.onnx_graphs import VideoEncoderGraph, _export, export_text_encoder, export_video_encoder, to_fp16

from .helpers import make_student


def model(nodes, inputs, outputs, initializers=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def frames_in():
    return helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 4, 4, 3])


def floats_out(name="y", shape=(1, 3, 4, 4)):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def test_a_uint8_intermediate_is_rejected_and_casting_first_passes():
    permute_first = model([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 1, 2], name="permute"),
                           helper.make_node("Cast", ["t"], ["y"], to=TensorProto.FLOAT, name="cast")],
                          [frames_in()], [floats_out()])
    report = check_model(permute_first)
    assert not report.passed
    assert any("permute" in p and "uint8 intermediate" in p for p in report.problems), report.problems
    cast_first = model([helper.make_node("Cast", ["x"], ["t"], to=TensorProto.FLOAT, name="cast"),
                        helper.make_node("Transpose", ["t"], ["y"], perm=[0, 3, 1, 2], name="permute")],
                       [frames_in()], [floats_out()])
    assert check_model(cast_first).passed, check_model(cast_first).problems


def test_int64_into_a_float_only_op_is_rejected():
    a = helper.make_tensor_value_info("a", TensorProto.INT64, [2, 2])
    b = helper.make_tensor_value_info("b", TensorProto.INT64, [2, 2])
    out = helper.make_tensor_value_info("c", TensorProto.INT64, [2, 2])
    report = check_model(model([helper.make_node("MatMul", ["a", "b"], ["c"], name="mm")], [a, b], [out]))
    assert not report.passed and any("mm" in p and "INT64" in p for p in report.problems), report.problems
    f = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 2]) for n in "ab"]
    ok = model([helper.make_node("MatMul", ["a", "b"], ["c"])], f, [helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 2])])
    assert check_model(ok).passed


def test_computed_axes_unknown_domains_unsorted_graphs_and_old_opsets_are_rejected():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 4])
    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    starts = helper.make_tensor("s", TensorProto.INT64, [1], [0])
    ends = helper.make_tensor("e", TensorProto.INT64, [1], [2])
    computed = model([helper.make_node("Slice", ["x", "s", "e", "axes"], ["y"], name="cut")], [x, axes], [y], [starts, ends])
    assert any("axes input" in p for p in check_model(computed).problems)
    constant = model([helper.make_node("Slice", ["x", "s", "e", "a"], ["y"])], [x], [y],
                     [starts, ends, helper.make_tensor("a", TensorProto.INT64, [1], [1])])
    assert check_model(constant).passed, check_model(constant).problems

    custom = model([helper.make_node("FusedGelu", ["x"], ["y"], domain="com.microsoft", name="g")], [x], [y])
    custom.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert any("domain 'com.microsoft'" in p for p in check_model(custom).problems)

    unsorted = model([helper.make_node("Relu", ["h"], ["y"], name="second"), helper.make_node("Relu", ["x"], ["h"], name="first")],
                     [x], [y])
    assert any("topologically" in p for p in check_model(unsorted).problems)
    assert any("opset 8" in p for p in check_model(model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=8)).problems)


def qdq(zero_type: int, zero_value: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])
    inits = [helper.make_tensor("scale", TensorProto.FLOAT, [], [0.1]), helper.make_tensor("zero", zero_type, [], [zero_value])]
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["y"], name="dq")]
    return model(nodes, [x], [y], inits)


def test_only_symmetric_int8_quantization_passes():
    assert check_model(qdq(TensorProto.INT8, 0)).passed
    nonzero = check_model(qdq(TensorProto.INT8, 3))
    assert not nonzero.passed and any("non-zero zero point" in p for p in nonzero.problems)
    asym = check_model(qdq(TensorProto.UINT8, 128))
    assert not asym.passed and any("uint8 zero point" in p for p in asym.problems)
    assert any("uint8 intermediate" in p for p in asym.problems)


class PermuteFirst(VideoEncoderGraph):
    """The video graph as it was exported before the fix: permute on the uint8 frames, then cast."""

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.permute(0, 1, 4, 2, 3).float()
        x = (x - self.mean) / self.std
        return self.student.encode_frames(x).mean(dim=1)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    root = tmp_path_factory.mktemp("graphs")
    student = make_student()
    video = export_video_encoder(student, root / "video.onnx", streams=2)
    example = torch.zeros(2, student.config.num_frames, 64, 64, 3, dtype=torch.uint8)
    old = _export(PermuteFirst(student).eval(), example, root / "old.onnx", "frames", "video_embedding")
    return {"video": video, "old": old, "text": export_text_encoder(student, root / "text.onnx"),
            "fp16": to_fp16(video, root / "video.fp16.onnx"),
            "fp16_ln32": to_fp16(video, root / "video.fp16.ln32.onnx", layernorm_fp32=True)}


def test_the_old_video_graph_fails_and_every_exported_graph_passes(graphs):
    old = check_onnx(graphs["old"])
    assert not old.passed and any("Transpose" in p and "uint8 intermediate" in p for p in old.problems), old.problems
    with pytest.raises(FrosterError, match="old.onnx is not TensorRT-compatible: .*uint8"):
        require_compatible(graphs["old"])
    for name in ("video", "text", "fp16", "fp16_ln32"):
        report = check_onnx(graphs[name])
        assert report.passed, (name, report.problems)
    first = onnx.load(str(graphs["video"])).graph.node[0]
    assert first.op_type == "Cast" and first.input[0] == "frames"


def layernorm_input_types(path) -> set[int]:
    """Element types of LayerNormalization inputs, by onnx's own shape inference (independent of the checker)."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in [*m.graph.value_info, *m.graph.input]}
    types.update({t.name: t.data_type for t in m.graph.initializer})
    return {types[n.input[0]] for n in m.graph.node if n.op_type == "LayerNormalization"}


def test_layernorm_fp32_keeps_layernorm_in_float32_inside_the_fp16_graph(graphs):
    assert layernorm_input_types(graphs["fp16_ln32"]) == {TensorProto.FLOAT}
    assert layernorm_input_types(graphs["fp16"]) == {TensorProto.FLOAT16}
    onnx.checker.check_model(onnx.load(str(graphs["fp16_ln32"])), full_check=True)  # valid ONNX: sorted, consistent types


def test_the_symmetric_int8_qdq_model_passes_and_the_x86_uint8_one_does_not(graphs, tmp_path):
    from froster_edge.calibration.int8 import quantize_video_encoder

    clips = np.random.default_rng(0).integers(0, 256, (4, 4, 64, 64, 3), dtype=np.uint8)
    verdicts = {}
    for activation, variant in (("int8", "s8s8"), ("uint8", "u8s8")):  # activations int8 / uint8, int8 weights
        out = tmp_path / f"{activation}.onnx"
        quantize_video_encoder(graphs["video"], out, clips, 2, tmp_path / "cache", "digest", variant=variant,
                               target="tensorrt")
        verdicts[activation] = check_onnx(out)
    assert verdicts["int8"].passed, verdicts["int8"].problems
    assert "QuantizeLinear" in verdicts["int8"].ops and "DequantizeLinear" in verdicts["int8"].ops
    assert not verdicts["uint8"].passed and any("symmetric" in p for p in verdicts["uint8"].problems)


@pytest.mark.parametrize("version, ok", [("10.3.0", True), ("10.16.1.11", True), ("11.4.0.106", True),
                                         ("10.2.0", False), ("8.6.1", False), ("12.0.0", False)])
def test_supported_tensorrt_range(version, ok):
    problem = tensorrt_version_problem(version)
    assert (problem is None) == ok
    if not ok:
        assert "\n" not in problem and version in problem and "10.3" in problem
