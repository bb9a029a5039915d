"""Training recipes: YAML + --set overrides, path resolution, the shipped recipes, and changes on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from froster_edge.config import RecipeConfig, apply_overrides, parse_override
from froster_edge.errors import ConfigError
from froster_edge.sampling import SamplingConfig
from froster_edge.train.config import changed_options, load_recipe, save_recipe

from .helpers import ROOT


def test_overrides_parse_yaml_values():
    assert parse_override("optim.lr=1e-5") == (["optim", "lr"], 1e-5)
    assert parse_override("train.amp=off") == (["train", "amp"], "off")
    assert parse_override("student.pretrained=null") == (["student", "pretrained"], None)
    assert parse_override("optim.betas=[0.8, 0.99]") == (["optim", "betas"], [0.8, 0.99])
    assert parse_override("train.progress=false") == (["train", "progress"], False)
    data = apply_overrides({"optim": {"lr": 1.0}}, ["optim.lr=3e6", "train.epochs=3"])
    assert data == {"optim": {"lr": 3e6}, "train": {"epochs": 3}}
    for bad in ("optim.lr", "=3", "optim..lr=1"):
        with pytest.raises(ConfigError, match="KEY=VALUE"):
            parse_override(bad)


def test_recipe_paths_relative_to_yaml_and_overrides_to_cwd(tmp_path, monkeypatch):
    recipe = tmp_path / "recipes" / "r.yaml"
    recipe.parent.mkdir()
    (tmp_path / "recipes" / "weights.bin").write_bytes(b"x")
    recipe.write_text(yaml.safe_dump({
        "student": {"model_name": "../models/m.json", "pretrained": "weights.bin"},
        "data": {"root": "videos", "classes": "/abs/classes.txt"},
        "optim": {"lr": 1e-5},
    }))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_recipe(recipe, ["data.train_list=lists/train.txt", "train.epochs=3", "student.num_frames=4"])
    assert cfg.student.model_name == str(tmp_path / "models" / "m.json")
    assert cfg.student.pretrained == str(tmp_path / "recipes" / "weights.bin")
    assert cfg.data.root == str(tmp_path / "recipes" / "videos")
    assert cfg.data.classes == "/abs/classes.txt"
    assert cfg.data.train_list == str(work / "lists" / "train.txt")
    assert (cfg.optim.lr, cfg.train.epochs, cfg.student.num_frames) == (1e-5, 3, 4)
    # an open_clip tag stays a tag
    assert load_recipe(None, ["student.pretrained=openai"]).student.pretrained == "openai"


@pytest.mark.parametrize("override,match", [
    (["optim.lrr=1"], r"unknown config key\(s\) optim.lrr"),
    (["trian.epochs=1"], r"unknown config key\(s\) trian"),
    (["train.epochs=0"], "train.epochs must be >= 1"),
    (["train.amp=fp8"], "must be one of"),
    (["optim.lr=fast"], "must be a finite number"),
    (["train.average_from=30"], "train.average_from must be an epoch in 1..22"),
    (["optim.lr.x=1"], "optim.lr must be a finite number"),
])
def test_bad_overrides_fail_by_name(override, match):
    with pytest.raises(ConfigError, match=match):
        load_recipe(None, override)


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in [*(ROOT / "configs").glob("tiny*.yaml"),
                                                                                   *(ROOT / "configs" / "train").glob("*.yaml")]))
def test_shipped_recipes_load(path):
    cfg = load_recipe(ROOT / path)
    text = (ROOT / path).read_text()
    own = {str(Path.home()), str(ROOT.parent)} - {"/"}  # this machine's home and the folder the checkout is in
    assert not [p for p in own if p + "/" in text]  # no paths of a particular machine
    if not Path(path).stem.startswith("tiny"):  # the paper recipes: ViT-B/16, T=8, from OpenAI CLIP, averaged from epoch 2
        assert (cfg.student.model_name, cfg.student.pretrained, cfg.student.num_frames) == ("ViT-B-16", "openai", 8)
        assert cfg.data.root is None and cfg.data.train_list is None  # placeholders the user sets
        assert cfg.train.average_from == 2 and cfg.optim.lr == 3.33e-6
        assert cfg.train.epochs == (22 if "k400_vitb16" == Path(path).stem else 12)
        # the official training scripts: global batch, fp16 mixed precision; the reference's frames
        batch = {"k400_vitb16": 64, "b2n_ucf101_vitb16": 64, "b2n_k400_vitb16": 32, "b2n_hmdb51_vitb16": 32,
                 "b2n_ssv2_vitb16": 32}
        assert (cfg.train.batch_size, cfg.train.amp) == (batch[Path(path).stem], "fp16")
        assert cfg.student.sampling_spec() == SamplingConfig().spec(8) and cfg.student.sampling.rule == "reference"
        if "b2n" in path:  # ViFi-CLIP's fixed 16-shot lists, never a fresh draw
            assert cfg.data.shots is None and "fs_base_s1_train.txt" in text and "fs_base_s3_train.txt" in text
    else:
        assert Path(cfg.data.root).is_dir() and Path(cfg.data.train_list).is_file()


def test_saved_recipe_reads_back_identically(tmp_path):
    cfg = load_recipe(ROOT / "configs" / "tiny.yaml", ["optim.lr=2e-4"])
    save_recipe(cfg, tmp_path / "config.yaml")
    again = load_recipe(tmp_path / "config.yaml")
    assert again == cfg
    assert changed_options(cfg, again) == []


def test_changed_options_ignore_what_does_not_change_the_result():
    a = RecipeConfig()
    b = load_recipe(None, ["data.num_workers=1", "train.progress=false", "train.log_every=3"])
    assert changed_options(a, b) == []
    c = load_recipe(None, ["optim.lr=1e-4", "train.epochs=5"])
    assert changed_options(a, c) == ["optim.lr", "train.epochs"]
