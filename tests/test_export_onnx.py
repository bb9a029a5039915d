"""ONNX graphs of the student: ONNX Runtime matches torch on real clips."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from froster_edge.config import StudentConfig
from froster_edge.export.onnx_graphs import export_text_encoder, export_video_encoder
from froster_edge.video import read_frames, resize_center_crop, uniform_indices

from .helpers import MEAN, STD, make_student


def uint8_clips(example_clips, streams: int, frames: int, size: int) -> np.ndarray:
    out = []
    for row in example_clips[:streams]:
        decoded = read_frames(row["path"])
        out.append(np.stack([resize_center_crop(decoded[i], size) for i in uniform_indices(len(decoded), frames)]))
    return np.stack(out)  # (S, T, size, size, 3) uint8


def torch_video(student, clips: np.ndarray) -> np.ndarray:
    """The torch student's video embeddings of uint8 clips, normalised here as CLIP does."""
    x = torch.from_numpy(((clips.astype(np.float32) / 255.0 - MEAN) / STD).transpose(0, 1, 4, 2, 3).copy())
    with torch.no_grad():
        return student.encode_video(x).video.numpy()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    student = make_student()
    d = tmp_path_factory.mktemp("bundle")
    return student, export_video_encoder(student, d / "video_encoder.onnx", streams=2), export_text_encoder(student, d / "text_encoder.onnx")


def test_video_encoder_matches_torch_on_real_clips(exported, example_clips):
    student, video_path, _ = exported
    clips = uint8_clips(example_clips, 2, 4, 64)
    sess = ort.InferenceSession(str(video_path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"frames": clips})[0]
    want = torch_video(student, clips)
    assert got.shape == want.shape == (2, student.embed_dim)
    assert np.abs(got - want).max() < 1e-4
    cos = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    assert cos.min() >= 0.9999


def test_text_encoder_matches_torch_any_batch(exported):
    student, _, text_path = exported
    sess = ort.InferenceSession(str(text_path), providers=["CPUExecutionProvider"])
    for prompts in (["yoga"], ["a video of a person practicing archery.", "arm wrestling", "Fencing: two people duel"]):
        tokens = student.tokenize(prompts)
        got = sess.run(None, {"tokens": tokens.numpy()})[0]
        with torch.no_grad():
            want = student.encode_text(tokens).numpy()
        assert np.abs(got - want).max() < 1e-4
        np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, rtol=1e-5)


def test_graphs_use_single_layernorm_and_float_argmax(exported):
    _, video_path, text_path = exported
    video = onnx.load(str(video_path), load_external_data=False)
    assert video.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert any(n.op_type == "LayerNormalization" for n in video.graph.node)
    text = onnx.load(str(text_path), load_external_data=False)
    types = {vi.name: vi.type.tensor_type.elem_type for vi in list(text.graph.value_info) + list(text.graph.input)}
    argmax_inputs = [n.input[0] for n in text.graph.node if n.op_type == "ArgMax"]
    assert argmax_inputs and all(types.get(i) == onnx.TensorProto.FLOAT for i in argmax_inputs), argmax_inputs


def test_exact_gelu_exports_as_the_form_onnx_runtime_fuses(tmp_path, tiny_model_cfg, example_clips):
    """A model with exact GELU (ViT-B's, not the tiny QuickGELU): ORT runs one Gelu kernel per block,
    no loose Erf, the output still matches torch's nn.GELU, and the student keeps its nn.GELU."""
    cfg = tmp_path / "tiny-gelu.json"
    cfg.write_text(json.dumps({k: v for k, v in tiny_model_cfg.items() if k != "quick_gelu"}))
    student = make_student(config=StudentConfig(model_name=str(cfg), pretrained=None, num_frames=4, image_size=64))
    gelus = [m for m in student.modules() if type(m) is torch.nn.GELU]
    layers = tiny_model_cfg["vision_cfg"]["layers"] + tiny_model_cfg["text_cfg"]["layers"]
    assert len(gelus) == layers
    video = export_video_encoder(student, tmp_path / "video_encoder.onnx", streams=2)
    text = export_text_encoder(student, tmp_path / "text_encoder.onnx")
    assert [m for m in student.modules() if type(m) is torch.nn.GELU] == gelus

    fused = {}
    for name, path in (("video", video), ("text", text)):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{name}.ort.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        assert "Erf" not in ops, name
        fused[name] = sum(op in ("Gelu", "BiasGelu") for op in ops)
    assert fused == {"video": tiny_model_cfg["vision_cfg"]["layers"], "text": tiny_model_cfg["text_cfg"]["layers"]}

    clips = uint8_clips(example_clips, 2, 4, 64)
    got = ort.InferenceSession(str(video), providers=["CPUExecutionProvider"]).run(None, {"frames": clips})[0]
    want = torch_video(student, clips)
    assert np.abs(got - want).max() < 1e-4
