"""Dataclass configs from mappings and YAML: unknown keys and wrong types fail by name."""

from __future__ import annotations

import pytest

from froster_edge.config import RecipeConfig, StudentConfig, from_mapping, load_yaml
from froster_edge.errors import ConfigError


def test_defaults_are_the_paper_recipe():
    cfg = RecipeConfig()
    assert (cfg.student.model_name, cfg.student.pretrained, cfg.student.num_frames) == ("ViT-B-16", "openai", 8)
    assert (cfg.distill.alpha, cfg.distill.vision_weight, cfg.distill.text_weight) == (0.1, 2.0, 2.0)


def test_from_mapping_nested_and_coerced():
    cfg = from_mapping(RecipeConfig, {"student": {"num_frames": 16, "pretrained": None}, "distill": {"alpha": 1}})
    assert cfg.student.num_frames == 16 and cfg.student.pretrained is None
    assert cfg.distill.alpha == 1.0 and isinstance(cfg.distill.alpha, float)


@pytest.mark.parametrize(
    "data,match",
    [
        ({"student": {"num_frame": 8}}, r"unknown config key\(s\) student.num_frame"),
        ({"student": {"num_frames": "8"}}, "must be an integer"),
        ({"student": {"temporal_attention": "divided"}}, "must be one of"),
        ({"student": {"num_frames": 0}}, "must be in 1..1024"),
        ({"distill": 3}, "must be a mapping"),
    ],
)
def test_bad_configs(data, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(RecipeConfig, data)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_yaml(tmp_path / "none.yaml")
    (tmp_path / "bad.yaml").write_text("student: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    (tmp_path / "ok.yaml").write_text("student:\n  num_frames: 4\n")
    assert from_mapping(RecipeConfig, load_yaml(tmp_path / "ok.yaml")).student == StudentConfig(num_frames=4)
