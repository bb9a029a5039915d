"""QuickGELU vs GELU: a CLIP rebuilt from a local weights file runs the network that wrote it."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from froster_edge.config import StudentConfig
from froster_edge.errors import CheckpointError, ConfigError
from froster_edge.model.checkpoint import load_student, save_student
from froster_edge.model.clip import build_clip, create_clip
from froster_edge.model.factory import create_student

from .helpers import TINY_MODEL


@pytest.fixture
def plain_cfg(tmp_path, tiny_model_cfg):
    """The tiny architecture in a model-config file that says nothing about the activation."""
    cfg = {k: v for k, v in tiny_model_cfg.items() if k != "quick_gelu"}
    path = tmp_path / "cfg" / "tiny-plain.json"
    path.parent.mkdir()
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture
def quickgelu_clip(tiny_model_cfg):
    torch.manual_seed(21)
    assert tiny_model_cfg["quick_gelu"] is True
    return build_clip(tiny_model_cfg).eval()


def _outputs(clip):
    torch.manual_seed(5)
    images = torch.randn(3, 3, 64, 64)
    tokens = torch.zeros(2, 77, dtype=torch.long)
    tokens[:, :11] = torch.randint(1, 400, (2, 11))
    tokens[:, 11] = 49407  # end of text
    with torch.no_grad():
        return torch.cat([clip.encode_image(images), clip.encode_text(tokens)])


def _video(student):
    torch.manual_seed(6)
    with torch.no_grad():
        return student.eval().encode_video(torch.randn(2, 2, 3, 64, 64)).frames


def _openai_layout_file(clip, path):
    """A state dict as OpenAI's releases hold it: parameters plus input_resolution etc."""
    state = {k: v.clone() for k, v in clip.state_dict().items()}
    state.update(input_resolution=torch.tensor(64), context_length=torch.tensor(77), vocab_size=torch.tensor(49408))
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def test_openai_layout_file_reloads_as_quickgelu(quickgelu_clip, plain_cfg, tiny_model_cfg, tmp_path):
    weights = _openai_layout_file(quickgelu_clip, tmp_path / "w" / "ViT-tiny.bin")
    clip, cfg = create_clip(str(plain_cfg), str(weights))
    assert cfg["quick_gelu"] is True
    want = _outputs(quickgelu_clip)
    assert torch.equal(_outputs(clip.eval()), want)
    # the same weights in a GELU network: another model, far beyond float noise
    gelu = build_clip({**tiny_model_cfg, "quick_gelu": False}).eval()
    gelu.load_state_dict(quickgelu_clip.state_dict())
    assert (_outputs(gelu) - want).abs().max() > 1e-2


def test_student_records_activation_and_reloads(quickgelu_clip, plain_cfg, tmp_path):
    weights = _openai_layout_file(quickgelu_clip, tmp_path / "w" / "ViT-tiny.bin")
    student = create_student(StudentConfig(model_name=str(plain_cfg), pretrained=str(weights), num_frames=2,
                                           image_size=64)).eval()
    assert student.config.activation == "quick_gelu"
    d = save_student(student, tmp_path / "s")
    saved = json.loads((d / "config.json").read_text())
    assert saved["student"]["activation"] == "quick_gelu" and saved["model_cfg"]["quick_gelu"] is True
    assert torch.equal(_video(load_student(d)), _video(student))
    # a config edited to claim the other activation is refused, not silently rebuilt
    saved["student"]["activation"] = "gelu"
    (d / "config.json").write_text(json.dumps(saved))
    with pytest.raises(CheckpointError, match="activation"):
        load_student(d)
    # a student saved before the activation was recorded reads it from its model config
    del saved["student"]["activation"]
    (d / "config.json").write_text(json.dumps(saved))
    assert load_student(d).config.activation == "quick_gelu"


def test_conflicting_activation_refused(quickgelu_clip, plain_cfg, tmp_path):
    weights = _openai_layout_file(quickgelu_clip, tmp_path / "w" / "ViT-tiny.bin")
    with pytest.raises(ConfigError, match="conflicting activations.*gelu"):
        create_student(StudentConfig(model_name=str(plain_cfg), pretrained=str(weights), activation="gelu",
                                     num_frames=2, image_size=64))
    # a model config that says GELU, against OpenAI's layout
    gelu_cfg = tmp_path / "gelu.json"
    gelu_cfg.write_text(json.dumps({**json.loads(plain_cfg.read_text()), "quick_gelu": False}))
    with pytest.raises(ConfigError, match="conflicting"):
        create_clip(str(gelu_cfg), str(weights))


def test_sidecar_config_and_path_evidence(quickgelu_clip, plain_cfg, tiny_model_cfg, tmp_path):
    state = {k: v.contiguous() for k, v in quickgelu_clip.state_dict().items()}
    hub = tmp_path / "hub"  # an open_clip hub folder: weights plus open_clip_config.json
    hub.mkdir()
    save_file(state, str(hub / "open_clip_model.safetensors"))
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": tiny_model_cfg}))
    assert create_clip(str(plain_cfg), str(hub / "open_clip_model.safetensors"))[1]["quick_gelu"] is True
    # a path naming the OpenAI weights decides when nothing else says, and never overrules
    named = tmp_path / "openai" / "w.safetensors"
    named.parent.mkdir()
    save_file(state, str(named))
    assert create_clip(str(plain_cfg), str(named))[1]["quick_gelu"] is True
    assert create_clip(str(plain_cfg), str(named), activation="gelu")[1]["quick_gelu"] is False
    # no evidence at all: refused in one line that says how to choose; either choice then builds
    bare = tmp_path / "plain" / "w.safetensors"
    bare.parent.mkdir()
    save_file(state, str(bare))
    with pytest.raises(ConfigError, match=r"--activation quick_gelu .* --activation gelu") as refused:
        create_clip(str(plain_cfg), str(bare))
    assert "\n" not in str(refused.value)
    assert create_clip(str(plain_cfg), str(bare), activation="quick_gelu")[1]["quick_gelu"] is True
    assert create_clip(str(plain_cfg), str(bare), activation="gelu")[1]["quick_gelu"] is False
    assert create_clip(str(TINY_MODEL), str(bare))[1]["quick_gelu"] is True  # the model config says so


def test_the_cli_asks_for_the_activation_of_a_file_nothing_speaks_for(quickgelu_clip, plain_cfg, tmp_path):
    """predict/eval/export refuse such a file in one line (exit 1) and build it with --activation."""
    from .helpers import CLIPS, assert_one_line_error, cli

    bare = tmp_path / "plain" / "w.safetensors"
    bare.parent.mkdir()
    save_file({k: v.contiguous() for k, v in quickgelu_clip.state_dict().items()}, str(bare))
    args = ["predict", str(CLIPS / "stgcn_clean_and_jerk.mp4"), "--classes", str(CLIPS / "classes.txt"),
            "--model", str(plain_cfg), "--pretrained", str(bare), "--frames", "2"]
    assert_one_line_error(cli(*args), 1, "--activation quick_gelu")
    ok = cli(*args, "--activation", "quick_gelu", "--json", "-")
    assert ok.returncode == 0, ok.stderr
