"""Student save/load round trips, corrupt checkpoints, and pretrained loading from local files."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file

from froster_edge.config import StudentConfig
from froster_edge.errors import CheckpointError, PretrainedWeightsError
from froster_edge.model.checkpoint import load_student, save_student
from froster_edge.model.clip import build_clip
from froster_edge.model.factory import create_student

from .helpers import TINY_MODEL


def _outputs(student):
    torch.manual_seed(11)
    frames = torch.randn(2, student.config.num_frames, 3, 64, 64)
    tokens = student.tokenize(["a video of a person doing yoga.", "arm wrestling"])
    with torch.no_grad():
        return student.encode_video(frames).frames, student.encode_text(tokens)


def test_round_trip_identical_outputs(tiny_student, tmp_path):
    save_student(tiny_student, tmp_path / "s")
    loaded = load_student(tmp_path / "s").eval()
    for a, b in zip(_outputs(tiny_student), _outputs(loaded), strict=False):
        assert torch.equal(a, b)
    cfg = json.loads((tmp_path / "s" / "config.json").read_text())
    assert cfg["student"]["temporal_attention"] == "neighbors"
    assert cfg["embed_dim"] == 64
    assert set(cfg["weights"]) == {"model.safetensors"}
    assert not list((tmp_path / "s").glob(".*tmp"))  # no temporary file left behind


def test_saved_weights_are_a_plain_open_clip_checkpoint(tiny_student, tiny_model_cfg, tmp_path):
    import open_clip

    save_student(tiny_student, tmp_path / "s")
    clip = build_clip(tiny_model_cfg)
    open_clip.load_checkpoint(clip, str(tmp_path / "s" / "model.safetensors"), strict=True)
    for k, v in tiny_student.clip.state_dict().items():
        assert torch.equal(clip.state_dict()[k], v)


def test_corrupt_weights_detected(tiny_student, tmp_path):
    d = save_student(tiny_student, tmp_path / "s")
    data = bytearray((d / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (d / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the hash"):
        load_student(d)


def test_truncated_config_and_missing_dir(tiny_student, tmp_path):
    d = save_student(tiny_student, tmp_path / "s")
    (d / "config.json").write_text('{"format": "froster-edge-stu')
    with pytest.raises(CheckpointError, match="corrupt"):
        load_student(d)
    with pytest.raises(CheckpointError, match="not found"):
        load_student(tmp_path / "nope")


def test_mismatched_weights_named(tiny_student, tiny_config, tmp_path):
    """Weights from another architecture: the error names the keys that do not fit."""
    d = save_student(tiny_student, tmp_path / "s")
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_cfg"]["vision_cfg"]["layers"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing keys visual\.transformer\.resblocks\.2"):
        load_student(d)


def test_pretrained_from_local_files(tiny_model_cfg, tiny_config, tmp_path):
    """`pretrained` as a local open_clip checkpoint: .pt state dict and .safetensors both load in fp32."""
    torch.manual_seed(5)
    source = build_clip(tiny_model_cfg)
    state = source.state_dict()
    torch.save({"state_dict": {"module." + k: v for k, v in state.items()}}, tmp_path / "w.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "w.safetensors"))
    for name in ("w.pt", "w.safetensors"):
        cfg = StudentConfig(**{**tiny_config.__dict__, "pretrained": str(tmp_path / name)})
        student = create_student(cfg)
        for k, v in state.items():
            assert torch.equal(student.clip.state_dict()[k], v), k
            assert student.clip.state_dict()[k].dtype == v.dtype


def test_pretrained_resized_positional_embedding(tiny_model_cfg, tiny_config, tmp_path):
    torch.manual_seed(6)
    save_file({k: v.contiguous() for k, v in build_clip(tiny_model_cfg).state_dict().items()}, str(tmp_path / "w.safetensors"))
    cfg = StudentConfig(**{**tiny_config.__dict__, "pretrained": str(tmp_path / "w.safetensors"), "image_size": 96})
    student = create_student(cfg)
    assert student.clip.visual.positional_embedding.shape[0] == (96 // 16) ** 2 + 1
    student.encode_video(torch.randn(1, 4, 3, 96, 96))


def test_pretrained_errors(tiny_config, tmp_path, monkeypatch):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="cannot load"):
        create_student(StudentConfig(**{**tiny_config.__dict__, "pretrained": str(bad)}))
    with pytest.raises(PretrainedWeightsError, match="not found"):
        create_student(StudentConfig(**{**tiny_config.__dict__, "pretrained": str(tmp_path / "missing.pt")}))
    with pytest.raises(PretrainedWeightsError, match="neither a local file nor an open_clip tag"):
        create_student(StudentConfig(**{**tiny_config.__dict__, "pretrained": "openai"}))


def test_hub_failure_is_one_clear_error(monkeypatch):
    """No network and nothing cached: one immediate error that says what to do instead."""
    import open_clip

    from froster_edge.model import clip as clip_mod

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights: connection refused")

    monkeypatch.setattr(open_clip, "download_pretrained", offline)
    # the tiny model stands in for ViT-B-32 under ViT-B-32/openai's real download entry: the same
    # path to the error without building an 88M-parameter tower first
    tag_cfg = open_clip.get_pretrained_cfg("ViT-B-32", "openai")
    assert tag_cfg
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: tag_cfg if tag == "openai" else {})
    config = StudentConfig(model_name=str(TINY_MODEL), pretrained="openai", num_frames=1, image_size=64)
    monkeypatch.setattr(clip_mod, "_reachable", lambda host, timeout=3.0: False)
    with pytest.raises(PretrainedWeightsError, match="no network and not in the cache.*--pretrained PATH"):
        create_student(config)
    monkeypatch.setattr(clip_mod, "_reachable", lambda host, timeout=3.0: True)
    with pytest.raises(PretrainedWeightsError, match=re.escape(f"cannot download open_clip weights {TINY_MODEL}/openai")):
        create_student(config)


def test_cached_tag_weights_load_without_network(tiny_model_cfg, monkeypatch, tmp_path):
    """A tag whose weights are in the hub cache loads in offline mode, with no request made."""
    import open_clip
    from huggingface_hub import constants

    from froster_edge.model import clip as clip_mod

    torch.manual_seed(7)
    state = build_clip(tiny_model_cfg).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "cached.safetensors"))
    calls = []

    def cache_only(cfg, **kwargs):
        calls.append(constants.HF_HUB_OFFLINE)
        if not constants.HF_HUB_OFFLINE:
            raise AssertionError("went to the network although the weights were cached")
        return str(tmp_path / "cached.safetensors")

    monkeypatch.setattr(open_clip, "download_pretrained", cache_only)
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: {"hf_hub": "org/model/", "quick_gelu": True})
    monkeypatch.setattr(clip_mod, "_reachable", lambda host, timeout=3.0: pytest.fail("probed the network"))
    student = create_student(StudentConfig(model_name=str(TINY_MODEL), pretrained="sometag", num_frames=2, image_size=64))
    assert calls == [True]
    for k, v in state.items():
        assert torch.equal(student.clip.state_dict()[k], v)
