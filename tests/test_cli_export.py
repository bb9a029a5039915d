"""`froster-edge export` and `froster-edge labels` as a user runs them."""

from __future__ import annotations

import json

import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.labels import load_labels
from froster_edge.errors import MissingCapability
from froster_edge.model.checkpoint import save_student

from .helpers import assert_one_line_error, cli


def test_export_trt_without_tensorrt_is_a_missing_capability_and_keeps_a_compatible_onnx_bundle(tiny_student, tmp_path):
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here; tests/test_gpu.py builds real engines")
    except ImportError:
        pass
    save_student(tiny_student, tmp_path / "student")
    bundle = tmp_path / "bundle"
    proc = cli("export", "--student", str(tmp_path / "student"), "--classes", "examples/clips/classes.txt",
               "--videos", "examples/clips", "-o", str(bundle), "--trt", "--max-parity-clips", "2", "--json", str(tmp_path / "m.json"))
    assert proc.returncode == MissingCapability.exit_code == 3 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]  # after the export's progress lines
    assert last.startswith("froster-edge: error: tensorrt is not installed") and "the ONNX bundle in" in last
    assert not (tmp_path / "m.json").exists()  # no report of an export that did not finish
    manifest = mf.verify_bundle(bundle)
    assert manifest["engines"] == [] and all(g["passed"] for g in manifest["parity"]["gates"])
    checked = manifest["tensorrt_check"]
    assert sorted(checked) == ["text_encoder.onnx", "video_encoder.fp16.onnx", "video_encoder.onnx"]
    assert all(r["passed"] and not r["problems"] for r in checked.values()), checked
    assert manifest["model"]["source"] == {"student": str(tmp_path / "student")}


def test_export_then_labels_from_the_bundle(tiny_student, tmp_path):
    save_student(tiny_student, tmp_path / "student")
    bundle = tmp_path / "bundle"
    proc = cli("export", "--student", str(tmp_path / "student"), "--classes", "examples/clips/classes.txt",
               "--videos", "examples/clips/stgcn_clean_and_jerk.mp4", "-o", str(bundle), "--no-fp16")
    assert proc.returncode == 0, proc.stderr
    assert "pass  video fp32 onnxruntime-cpu vs torch" in proc.stdout and "FAIL" not in proc.stdout
    assert not (bundle / "video_encoder.fp16.onnx").exists()

    (tmp_path / "mine.txt").write_text("waving\nclapping\n")
    proc = cli("labels", "--bundle", str(bundle), "--classes", str(tmp_path / "mine.txt"))
    assert proc.returncode == 0, proc.stderr
    assert load_labels(bundle / "labels.npz").names == ["waving", "clapping"]
    mf.verify_bundle(bundle)

    (tmp_path / "more.json").write_text(json.dumps({"0": "Jumping: leaving the ground with both feet"}))
    proc = cli("labels", "--student", str(tmp_path / "student"), "--classes", str(tmp_path / "more.json"),
               "-o", str(bundle / "labels.npz"), "--append")
    assert proc.returncode == 0, proc.stderr
    assert load_labels(bundle / "labels.npz").names == ["waving", "clapping", "Jumping"]


def test_labels_and_export_errors(tiny_student, tmp_path):
    save_student(tiny_student, tmp_path / "student")
    (tmp_path / "dup.txt").write_text("run\nRun\n")
    assert_one_line_error(cli("labels", "--student", str(tmp_path / "student"), "--classes", str(tmp_path / "dup.txt"),
                              "-o", str(tmp_path / "l.npz")), 1, "appears twice")
    assert_one_line_error(cli("labels", "--bundle", str(tmp_path / "nothing"), "--classes", "examples/clips/classes.txt"),
                          1, "bundle directory not found")
    assert_one_line_error(cli("labels", "--classes", "examples/clips/classes.txt", "-o", str(tmp_path / "l.npz")),
                          1, "exactly one of --student and --bundle")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.tex").write_text("x")
    assert_one_line_error(cli("export", "--student", str(tmp_path / "student"), "--classes", "examples/clips/classes.txt",
                              "-o", str(tmp_path / "taken")), 1, "is not a froster-edge bundle")
    assert_one_line_error(cli("export", "--student", str(tmp_path / "student"), "--classes", "examples/clips/classes.txt",
                              "--videos", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "b")), 1, "no such video")


@pytest.mark.parametrize("command", ["export", "labels"])
def test_help(command):
    proc = cli(command, "--help")
    assert proc.returncode == 0 and "Example" in proc.stdout
