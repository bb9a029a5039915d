"""The `froster-edge` command as a user runs it: exit codes, one-line errors, JSON output."""

from __future__ import annotations

import json

import pytest
import torch

from froster_edge.model.checkpoint import save_student

from .helpers import assert_one_line_error, cli, release_checkpoint


def test_info_json():
    proc = cli("info", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("froster-edge", "torch", "open_clip", "onnx", "onnxruntime", "onnxruntime providers", "tensorrt", "gpus"):
        assert key in info
    assert "CPUExecutionProvider" in info["onnxruntime providers"]
    from froster_edge.calibration.cpu_features import detect

    assert info["cpu int8 dot product"] == detect().describe()  # what INT8 figures depend on


@pytest.mark.parametrize("command", ["info", "import-froster", "predict"])
def test_help(command):
    proc = cli(command, "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout


def test_import_froster_command(tiny_model_cfg, tmp_path):
    ckpt, _ = release_checkpoint({**tiny_model_cfg, "quick_gelu": True})
    torch.save(ckpt, tmp_path / "froster.pyth")
    proc = cli("import-froster", str(tmp_path / "froster.pyth"), "-o", str(tmp_path / "student"))
    assert proc.returncode == 0, proc.stderr
    assert "T=8" in proc.stdout and (tmp_path / "student" / "model.safetensors").is_file()
    assert_one_line_error(cli("import-froster", str(tmp_path / "none.pyth"), "-o", str(tmp_path / "x")), 1, "checkpoint not found")


def test_predict_on_a_real_clip(tiny_student, example_clips, tmp_path):
    save_student(tiny_student, tmp_path / "student")
    clip = example_clips[0]["path"]
    proc = cli("predict", str(clip), "--classes", "examples/clips/classes.txt", "--student", str(tmp_path / "student"),
               "--top-k", "3", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert len(out["top"]) == 3
    scores = [p["score"] for p in out["top"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1.0 + 1e-6


def test_predict_errors(tiny_student, tmp_path):
    save_student(tiny_student, tmp_path / "student")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x01" * 1000)
    assert_one_line_error(
        cli("predict", str(tmp_path / "bad.mp4"), "--classes", "examples/clips/classes.txt", "--student", str(tmp_path / "student")),
        1, "bad.mp4",
    )
    assert_one_line_error(
        cli("predict", "x.mp4", "--classes", "examples/clips/classes.txt", "--student", str(tmp_path / "none")),
        1, "student directory not found",
    )
    assert_one_line_error(
        cli("predict", "x.mp4", "--classes", "examples/clips/classes.txt", "--model", "configs/models/tiny-vit.json",
            "--pretrained", str(tmp_path / "missing.bin")),
        1, "pretrained checkpoint file not found",
    )
