"""Attacks with configs: non-finite numbers, absurd model sizes, malformed structures, alias-bombed
YAML; and the retry after a run that failed before its first checkpoint (issue 17, class 6)."""

from __future__ import annotations

import json

import pytest
import torch

from froster_edge.config import StudentConfig
from froster_edge.errors import ConfigError
from froster_edge.model.clip import resolve_model_config
from froster_edge.train import ddp
from froster_edge.train.config import load_recipe
from froster_edge.train.loop import Trainer

from .helpers import TINY_MODEL, TINY_RECIPE, train_cli


@pytest.mark.parametrize("setting", ["optim.lr=.nan", "optim.lr=.inf", "distill.alpha=.nan", "distill.alpha=-.inf"])
def test_non_finite_numbers_are_refused_at_validation(setting):
    with pytest.raises(ConfigError, match=f"config key {setting.split('=')[0]} must be a finite number"):
        load_recipe(TINY_RECIPE, [setting])


def test_the_cli_refuses_a_nan_learning_rate_in_one_line_and_leaves_no_run_dir(tmp_path):
    code, err = train_cli(str(TINY_RECIPE), "--out", str(tmp_path / "run"), "--set", "optim.lr=.nan")
    assert code == 1 and err.count("\n") == 1 and "optim.lr must be a finite number" in err
    assert not (tmp_path / "run").exists()


def test_a_run_dir_left_before_the_first_checkpoint_does_not_block_the_retry(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("optim: {lr: 1.0e-30}\n")  # what a run that failed at step 1 leaves
    (run / "metrics.jsonl").write_text('{"step": 1, "loss": NaN}\n')
    dist = ddp.Dist(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    trainer = Trainer(load_recipe(TINY_RECIPE), run, dist)
    trainer._check_run_dir()  # no "already holds a training run"
    assert not (run / "metrics.jsonl").exists()
    (run / "checkpoints" / "epoch_001").mkdir(parents=True)
    with pytest.raises(ConfigError, match="already holds a training run"):
        trainer._check_run_dir()


@pytest.mark.parametrize("field, value, message", [
    ("num_frames", 10**6, "student.num_frames must be in 1..1024"),
    ("image_size", 10**6, "student.image_size must be in 1..4096"),
])
def test_absurd_student_sizes_are_refused_before_building(field, value, message):
    with pytest.raises(ConfigError, match=message):
        StudentConfig(model_name=str(TINY_MODEL), pretrained=None, **{field: value})


@pytest.mark.parametrize("change, message", [
    (lambda c: c["vision_cfg"].update(width=10**6), "parameters"),
    (lambda c: c["text_cfg"].update(layers=10**5, width=4096), "parameters"),
    (lambda c: c["vision_cfg"].update(patch_size=1, image_size=4096), "patches a frame"),
    (lambda c: c["vision_cfg"].update(width="64"), "vision_cfg.width must be a positive integer"),
    (lambda c: c.update(embed_dim=-1), "embed_dim must be a positive integer"),
    (lambda c: c.update(vision_cfg=[1, 2]), "is a mapping with embed_dim, vision_cfg and text_cfg"),
])
def test_absurd_or_malformed_model_configs_are_refused_before_building(tmp_path, change, message):
    from froster_edge.model.factory import create_student

    cfg = json.loads(TINY_MODEL.read_text())
    change(cfg)
    path = tmp_path / "model.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=message):
        resolve_model_config(str(path))
    with pytest.raises(ConfigError, match=message):
        size = cfg["vision_cfg"]["image_size"] if isinstance(cfg["vision_cfg"], dict) else 64
        create_student(StudentConfig(model_name=str(path), pretrained=None, num_frames=4, image_size=size))


def test_a_model_config_that_is_not_a_mapping(tmp_path):
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(ConfigError, match="is a mapping"):
        resolve_model_config(str(tmp_path / "list.json"))


def test_error_messages_echoing_an_alias_bombed_yaml_stay_short(tmp_path):
    lines = ['a0: &a0 ["xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"]']
    for i in range(1, 12):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 4)}]")
    lines.append("optim: {lr: *a11}")
    (tmp_path / "bomb.yaml").write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as info:
        load_recipe(tmp_path / "bomb.yaml")
    assert len(str(info.value)) < 500, len(str(info.value))
    (tmp_path / "keys.yaml").write_text("optim: {" + ", ".join(f"k{'x' * 50}{i}: 1" for i in range(2000)) + "}\n")
    with pytest.raises(ConfigError, match="unknown config key") as info:
        load_recipe(tmp_path / "keys.yaml")
    assert len(str(info.value)) < 1000


@pytest.mark.parametrize("reader, name", [
    ("froster_edge.prompts:read_class_texts", "classes.json"),
    ("froster_edge.prompts:read_class_texts", "classes.txt"),
    ("froster_edge.data.lists:read_classes", "classes.csv"),
    ("froster_edge.evaluation.protocol:load_protocol", "protocol.yaml"),
    ("froster_edge.train.config:load_recipe", "recipe.yaml"),
    ("froster_edge.model.clip:resolve_model_config", "model.json"),
])
def test_a_binary_file_or_a_folder_where_text_is_read_is_one_named_error(tmp_path, reader, name):
    import importlib

    module, func = reader.split(":")
    read = getattr(importlib.import_module(module), func)
    (tmp_path / name).write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(ConfigError, match="is not a UTF-8 text"):
        read(str(tmp_path / name))
    (tmp_path / "dir" / name).mkdir(parents=True)
    with pytest.raises(ConfigError):
        read(str(tmp_path / "dir" / name))


def test_a_folder_named_like_a_manifest_is_a_bundle_error(tmp_path):
    from froster_edge.bundle import manifest as mf
    from froster_edge.errors import BundleError

    (tmp_path / mf.MANIFEST_FILE).mkdir()
    with pytest.raises(BundleError):
        mf.read_manifest(tmp_path)
