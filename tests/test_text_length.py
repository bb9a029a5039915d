"""The bundle's text encoder reads tokens padded only to the longest prompt (issue 15's speed):
the same embeddings as open_clip's own CLIP.encode_text over the full 77 tokens, and a bundle whose
text encoder still has the old static 77-token input keeps working."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.relabel import BundleTextEncoder, relabel_bundle
from froster_edge.export.onnx_graphs import export_text_encoder
from froster_edge.model.checkpoint import load_student
from froster_edge.prompts import prompts_for, read_class_texts

from .helpers import CLIPS

open_clip = pytest.importorskip("open_clip")
CLASSES = CLIPS / "classes.txt"


@pytest.fixture(scope="module")
def student(tiny_bundle):
    return load_student(mf.read_manifest(tiny_bundle)["model"]["source"]["student"]).eval()


def reference_rows(student, classes) -> tuple[np.ndarray, np.ndarray]:
    """open_clip's CLIP.encode_text on open_clip's 77-token ids, per prompt (C, P, D), and the
    class rows as the student classifies: normalised prompts averaged, normalised again (C, D)."""
    prompts = [prompts_for(c) for c in classes]
    with torch.no_grad():
        feats = np.stack([student.clip.encode_text(open_clip.tokenize(ps), normalize=True).numpy() for ps in prompts])
    mean = feats.mean(1)
    return feats, mean / np.linalg.norm(mean, axis=-1, keepdims=True)


def input_dims(path) -> list:
    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]


def test_trimmed_onnx_encoding_equals_open_clip_at_77_tokens_on_the_class_list(tiny_bundle, student):
    classes = read_class_texts(CLASSES)
    want_prompts, want_rows = reference_rows(student, classes)
    dims = input_dims(tiny_bundle / mf.TEXT_ONNX)
    assert all(isinstance(d, str) for d in dims), dims  # both axes dynamic: prompts and tokens
    text = mf.read_manifest(tiny_bundle)["onnx"]["text_encoder"]
    assert text["input_shape"] == ["prompts", "tokens"] and text["pad_to"] == "longest"
    encoder = BundleTextEncoder.load(tiny_bundle)
    lengths = []
    for c, want in zip(classes, want_prompts, strict=False):
        tokens = encoder.tokenizer(prompts_for(c), pad_to="longest")
        lengths.append(tokens.shape[1])
        got = encoder.encode(tokens)
        np.testing.assert_allclose(np.linalg.norm(got, axis=-1), 1.0, atol=1e-5)
        assert np.abs(got - want).max() < 1e-4, c.name
    assert max(lengths) < 40  # the prompts are far shorter than the context: the trim is real
    table = encoder.table(classes)  # the label table's path: batches padded to their longest
    assert np.abs(table.embeddings - want_rows).max() < 1e-4


def test_a_bundle_with_the_old_static_77_token_text_encoder_still_relabels(tiny_bundle, student, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    export_text_encoder(student, old / mf.TEXT_ONNX, dynamic_length=False)
    assert input_dims(old / mf.TEXT_ONNX)[1] == 77
    manifest = mf.read_manifest(old)
    text = {k: v for k, v in manifest["onnx"]["text_encoder"].items() if k not in ("input_shape", "pad_to")}
    mf.update_files(old, manifest, [mf.TEXT_ONNX], onnx={**manifest["onnx"], "text_encoder": text})  # as written before
    classes = read_class_texts(CLASSES)[:4]
    encoder = BundleTextEncoder.load(old)
    short = encoder.tokenizer(prompts_for(classes[0]), pad_to="longest")
    session = ort.InferenceSession(str(old / mf.TEXT_ONNX), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="Expected: 77"):  # the static graph itself refuses the trimmed ids: the encoder pads them
        session.run(None, {"tokens": short})
    got = relabel_bundle(old, classes, tmp_path / "old.npz", encoder=encoder)
    new = relabel_bundle(tiny_bundle, classes, tmp_path / "new.npz")
    _, want_rows = reference_rows(student, classes)
    assert np.abs(got.embeddings - want_rows).max() < 1e-4
    assert np.abs(got.embeddings - new.embeddings).max() < 1e-4
