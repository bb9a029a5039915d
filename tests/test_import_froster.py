"""Importing official FROSTER (PySlowFast) checkpoints, written here in the release's layout."""

from __future__ import annotations

import json

import open_clip
import pytest
import torch

from froster_edge.errors import CheckpointError
from froster_edge.model.checkpoint import load_student, load_tensors
from froster_edge.model.clip import build_clip
from froster_edge.model.froster_import import import_froster, infer_model_cfg, known_name

from .helpers import release_checkpoint


def test_import_reproduces_the_student(tiny_model_cfg, tmp_path):
    cfg = {**tiny_model_cfg, "quick_gelu": True}
    ckpt, clip = release_checkpoint(cfg)
    torch.save(ckpt, tmp_path / "froster.pyth")
    out = import_froster(tmp_path / "froster.pyth", tmp_path / "student")
    student = load_student(out).eval()
    assert student.config.num_frames == 8 and student.config.temporal_attention == "neighbors"
    for k, v in clip.state_dict().items():
        assert torch.equal(student.clip.state_dict()[k], v), k
        assert student.clip.state_dict()[k].dtype == torch.float32
    proj = load_tensors(out, "projectors.safetensors")
    assert torch.equal(proj["projector_v.fc1.weight"], ckpt["model_state"]["projector_v.0.weight"])
    assert torch.equal(proj["projector_t.fc2.weight"], ckpt["model_state"]["projector_t.2.weight"])
    teacher = load_tensors(out, "teacher.safetensors")
    assert torch.equal(teacher["visual.proj"], ckpt["model_state"]["raw_model.visual.proj"])
    meta = json.loads((out / "config.json").read_text())
    assert meta["extra"] == {"imported_from": "froster.pyth", "epoch": 22}


def test_import_accepts_ddp_prefix_and_missing_teacher(tiny_model_cfg, tmp_path):
    ckpt, _ = release_checkpoint({**tiny_model_cfg, "quick_gelu": True})
    ckpt["model_state"] = {"module." + k: v for k, v in ckpt["model_state"].items() if not k.startswith("raw_model.")}
    torch.save(ckpt, tmp_path / "c.pyth")
    out = import_froster(tmp_path / "c.pyth", tmp_path / "s", num_frames=16)
    assert load_student(out).config.num_frames == 16
    assert not (out / "teacher.safetensors").exists()


@pytest.mark.parametrize("name", ["ViT-B-32", "ViT-B-16", "ViT-L-14"])
def test_architecture_inferred_from_shapes(name):
    """Shapes of the real architectures (meta tensors: no memory) give back open_clip's config."""
    ref = open_clip.get_model_config(name)
    with torch.device("meta"):
        model = build_clip({**ref, "quick_gelu": True})
    cfg = infer_model_cfg(model.state_dict())
    assert cfg["embed_dim"] == ref["embed_dim"]
    for key in ("image_size", "layers", "width", "patch_size"):
        assert cfg["vision_cfg"][key] == ref["vision_cfg"][key], key
    for key in ("context_length", "vocab_size", "width", "heads", "layers"):
        assert cfg["text_cfg"][key] == ref["text_cfg"][key], key
    assert known_name(cfg) == name


def test_missing_and_unexpected_keys_named(tiny_model_cfg, tmp_path):
    ckpt, _ = release_checkpoint({**tiny_model_cfg, "quick_gelu": True})
    del ckpt["model_state"]["model.visual.transformer.resblocks.1.mlp.c_fc.bias"]
    torch.save(ckpt, tmp_path / "missing.pyth")
    with pytest.raises(CheckpointError, match=r"missing keys visual\.transformer\.resblocks\.1\.mlp\.c_fc\.bias"):
        import_froster(tmp_path / "missing.pyth", tmp_path / "a")
    ckpt, _ = release_checkpoint({**tiny_model_cfg, "quick_gelu": True})
    ckpt["model_state"]["prompt_learner.ctx"] = torch.zeros(4, 64)
    torch.save(ckpt, tmp_path / "extra.pyth")
    with pytest.raises(CheckpointError, match=r"unexpected keys .*prompt_learner\.ctx"):
        import_froster(tmp_path / "extra.pyth", tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


class Payload:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_refuses_to_unpickle_code(tmp_path):
    torch.save({"model_state": {}, "cfg": Payload()}, tmp_path / "evil.pyth")
    with pytest.raises(CheckpointError, match=r"references print\); refusing to unpickle"):
        import_froster(tmp_path / "evil.pyth", tmp_path / "s")


def test_not_a_froster_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no 'model_state'"):
        import_froster(tmp_path / "other.pt", tmp_path / "s")
    (tmp_path / "garbage.pt").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        import_froster(tmp_path / "garbage.pt", tmp_path / "s")
