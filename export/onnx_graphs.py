"""The two deployable graphs and their ONNX export.

Video encoder: uint8 frames [S, T, H, W, 3] (RGB, resized/cropped) -> embeddings [S, D], the mean
of L2-normalised frame features; CLIP's normalisation is inside the graph. Text encoder: int64
tokens [N, L] (both dynamic) -> L2-normalised [N, D]; the end-of-text ArgMax runs on float tokens,
which more runtimes accept. Exported with torch's dynamo exporter (opset 18) as plain ONNX ops
(no fused MHA; exact GELU in the form ORT fuses); weights over 1.5 GB go to a `.onnx.data` file.
`to_fp16` makes the half-precision copy.

See docs/export.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from ..model.clip import encode_text
from ..model.student import VideoStudent
from ..video import CLIP_MEAN, CLIP_STD

OPSET = 18
EXTERNAL_DATA_BYTES = 1_500_000_000
TRACE_LENGTH = 12  # the example's token length when the axis is dynamic


class ErfGELU(nn.Module):
    """Exact GELU, `x * 0.5 * (1 + erf(x / sqrt 2))`, written in the order ONNX Runtime's Gelu fusion
    matches. torch's exporter applies the 0.5 to the erf term instead, which ORT leaves as five
    element-wise passes over the MLP's 4x-wide activations. (OpenAI CLIP's QuickGELU fuses as is.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


@contextmanager
def fusable_gelu(module: nn.Module) -> Iterator[None]:
    """Within the block, every exact `nn.GELU` in `module` is an `ErfGELU` (same function); restored after."""
    found = [(parent, name, child) for parent in module.modules() for name, child in parent.named_children()
             if type(child) is nn.GELU and child.approximate == "none"]
    for parent, name, _ in found:
        setattr(parent, name, ErfGELU())
    try:
        yield
    finally:
        for parent, name, child in found:
            setattr(parent, name, child)


class VideoEncoderGraph(nn.Module):
    def __init__(self, student: VideoStudent):
        super().__init__()
        self.student = student
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 1, 3, 1, 1) * 255.0)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 1, 3, 1, 1) * 255.0)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        # Cast first: TensorRT accepts uint8 only at a network input/output, so no op may run on uint8
        x = frames.float().permute(0, 1, 4, 2, 3)  # (S, T, 3, H, W)
        x = (x - self.mean) / self.std
        return self.student.encode_frames(x).mean(dim=1)  # (S, D)


class TextEncoderGraph(nn.Module):
    def __init__(self, student: VideoStudent):
        super().__init__()
        self.clip = student.clip

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return encode_text(self.clip, tokens, normalize=True, trim=False)  # no data-dependent slicing in the graph


def export_video_encoder(student: VideoStudent, path: str | Path, streams: int = 1) -> Path:
    """Trace the video encoder at a static [streams, T, S, S, 3] uint8 input to ONNX."""
    size = student.model_cfg["vision_cfg"]["image_size"]
    example = torch.zeros(streams, student.config.num_frames, size, size, 3, dtype=torch.uint8)
    return _export(VideoEncoderGraph(student).eval(), example, path, "frames", "video_embedding")


def export_text_encoder(student: VideoStudent, path: str | Path, dynamic_length: bool = True) -> Path:
    """Trace the text encoder to ONNX with a dynamic number of prompts and, unless `dynamic_length`
    is False (the static form of bundles exported before), a dynamic token length 1..context.

    The graph slices the positional embedding and the causal mask to the input's length (symbolic in
    the trace), so a caller feeds tokens padded only to its longest prompt (tokenizer `pad_to="longest"`).
    """
    context = student.model_cfg["text_cfg"].get("context_length", 77)
    example = student.tokenize(["a video of a person doing something."] * 2)[:, :context]  # 2: keep the axis dynamic
    dims = {0: torch.export.Dim("prompts", min=1, max=4096)}
    if dynamic_length:
        example = example[:, :TRACE_LENGTH]  # not 1 or the context: a length the tracer cannot specialise on
        dims[1] = torch.export.Dim("tokens", min=1, max=context)
    return _export(TextEncoderGraph(student).eval(), example, path, "tokens", "text_embedding", {"tokens": dims})


def _export(module: nn.Module, example: torch.Tensor, path: str | Path, input_name: str, output_name: str,
            dynamic_shapes: dict | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    external = sum(p.numel() * p.element_size() for p in module.parameters()) > EXTERNAL_DATA_BYTES
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused MHA kernel does not export
    try:
        with torch.no_grad(), fusable_gelu(module):
            torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=OPSET,
                              input_names=[input_name], output_names=[output_name],
                              dynamic_shapes=dynamic_shapes, external_data=external, verbose=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return path


def to_fp16(src: str | Path, dst: str | Path, layernorm_fp32: bool = False) -> Path:
    """A float16 copy of an ONNX graph with float32 inputs/outputs kept (uint8 frames stay uint8).

    `layernorm_fp32` keeps LayerNormalization in float32, for weights whose activations overflow
    fp16 there.
    """
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load(str(src))
    block = list(DEFAULT_OP_BLOCK_LIST) + (["LayerNormalization"] if layernorm_fp32 else [])
    half = convert_float_to_float16(model, keep_io_types=True, op_block_list=block)
    _tidy(half.graph)
    dst = Path(dst)
    large = half.ByteSize() > EXTERNAL_DATA_BYTES
    onnx.save(half, str(dst), save_as_external_data=large, location=dst.name + ".data" if large else None)
    return dst


def _tidy(graph) -> None:
    """Make the converter's graph valid ONNX again: it appends the Casts around blocked ops after the
    nodes that read them, and leaves fp16 value_info on weights it kept in fp32 for those ops; onnx
    shape inference (and the TensorRT check built on it) refuses both."""
    weights = {t.name for t in graph.initializer}
    kept = [v for v in graph.value_info if v.name not in weights]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    known = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError(f"the graph has a cycle or reads an undefined tensor at node {pending[0].name!r}")
        ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ids]
        for n in ready:
            known.update(n.output)
        ordered += ready
    copies = [type(n).FromString(n.SerializeToString()) for n in ordered]
    del graph.node[:]
    graph.node.extend(copies)
