"""INT8 calibration behind its gate, and confidence temperature: real clips, tiny exported student."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from froster_edge.calibration.calibrate import INT8_ONNX, calibrate_confidence, calibrate_int8
from froster_edge.calibration.clips import gather_videos, sample_clips
from froster_edge.calibration.confidence import expected_calibration_error, fit_temperature, nll
from froster_edge.calibration.int8 import linear_nodes, quantize_video_encoder
from froster_edge.calibration.options import CalibrationOptions, GateThresholds
from froster_edge.errors import ConfigError
from froster_edge.bundle import manifest as mf
from froster_edge.export.bundle import export_bundle
from froster_edge.bundle.labels import load_labels
from froster_edge.export.options import ExportOptions

from .conftest import CLIPS
from .test_cli import assert_one_line_error, run
from .test_export_bundle import CLASSES, VIDEOS, make_student


@pytest.fixture(scope="module")
def float_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "bundle"
    export_bundle(make_student(), out, CLASSES, VIDEOS, ExportOptions(streams=1, fp16=False, max_parity_clips=2))
    return out


@pytest.fixture
def bundle(float_bundle, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(float_bundle, copy)
    return copy


def snapshot(bundle: Path) -> dict[str, bytes]:
    return {p.relative_to(bundle).as_posix(): p.read_bytes() for p in bundle.rglob("*")
            if p.is_file() and not p.relative_to(bundle).as_posix().startswith("calibration/")}


def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0.0, 3.0, (20000, 10))
    p = np.exp(true_logits - true_logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    labels = (p.cumsum(1) > rng.random((len(p), 1))).argmax(1)  # a draw from each softmax
    observed = true_logits * 2.5  # an over-confident model: logits 2.5x too large
    t = fit_temperature(observed, labels)
    assert t == pytest.approx(2.5, rel=0.03)
    assert expected_calibration_error(observed, labels, t) < 0.3 * expected_calibration_error(observed, labels)
    assert nll(observed, labels, t) < nll(observed, labels)


def test_ece_against_a_hand_computation():
    # two samples, both in the top bin: confidences 0.9 (right) and 0.8 (wrong) -> |0.5 - 0.85| = 0.35
    logits = np.log(np.array([[0.9, 0.1], [0.8, 0.2]]))
    assert expected_calibration_error(logits, np.array([0, 1]), bins=2) == pytest.approx(0.35)
    assert nll(logits, np.array([0, 1])) == pytest.approx(-(np.log(0.9) + np.log(0.2)) / 2)


def test_calibration_clips_are_reproducible_and_cropped_like_the_runtime():
    items = gather_videos(CLIPS)
    a = sample_clips(items, 4, 64, 6, seed=3, clips_per_video=2)
    b = sample_clips(items, 4, 64, 6, seed=3, clips_per_video=2)
    assert a.frames.shape == (6, 4, 64, 64, 3) and a.frames.dtype == np.uint8
    assert a.digest() == b.digest() and a.sources == b.sources
    assert a.digest() != sample_clips(items, 4, 64, 6, seed=4, clips_per_video=2).digest()


def test_qdq_model_keeps_sensitive_ops_float_and_the_cache_reproduces_it(float_bundle, tmp_path):
    clips = sample_clips(gather_videos(CLIPS), 4, 64, 6, seed=0, clips_per_video=2)
    first = quantize_video_encoder(float_bundle / mf.VIDEO_ONNX, tmp_path / "a.onnx", clips.frames, 1, tmp_path / "cache",
                                   clips.digest())
    second = quantize_video_encoder(float_bundle / mf.VIDEO_ONNX, tmp_path / "b.onnx", clips.frames, 1, tmp_path / "cache",
                                    clips.digest())
    assert not first["cache_hit"] and second["cache_hit"]
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()

    model = onnx.load(str(tmp_path / "a.onnx"))
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    # activations only: a random model's identical zero biases are shared initializers, one of which
    # a quantized Gemm dequantizes (exactly, zeros)
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            assert node.input[0] not in dequantized, f"{node.op_type} {node.name} was quantized"
    linear, projection = linear_nodes(model)
    assert projection is not None and not dequantized & set(next(n for n in model.graph.node if n.name == projection).input)
    quantized = [n for n in model.graph.node if n.name in linear and dequantized & set(n.input)]
    assert len(quantized) == len(linear) - 1  # every linear layer but the projection
    out = ort.InferenceSession(str(tmp_path / "a.onnx"), providers=["CPUExecutionProvider"]).run(None, {"frames": clips.frames[:1]})[0]
    ref = ort.InferenceSession(str(float_bundle / mf.VIDEO_ONNX), providers=["CPUExecutionProvider"]).run(None, {"frames": clips.frames[:1]})[0]
    assert out.shape == ref.shape and np.isfinite(out).all()


def test_gate_measures_on_held_out_videos_and_an_accepted_model_enters_the_manifest(bundle):
    options = CalibrationOptions(max_clips=6, thresholds=GateThresholds(min_top1_agreement=0.0, min_speedup=0.0), reps=2)
    report = calibrate_int8(bundle, CLIPS, options=options)
    assert report["accepted"] and report["file"] == INT8_ONNX
    assert report["held_out"]["videos"] and not set(report["held_out"]["videos"]) & set(report["calibration"]["videos"])
    assert set(report["held_out"]["videos"]) | set(report["calibration"]["videos"]) <= {p.name for p in VIDEOS}
    manifest = mf.verify_bundle(bundle)
    assert manifest["int8"]["gate"] == report["gate"] and manifest["files"][INT8_ONNX]
    assert 0.0 <= report["gate"]["top1_agreement"] <= 1.0 and report["gate"]["speedup"] > 0


def test_a_failed_gate_leaves_the_float_bundle_untouched(bundle):
    before = snapshot(bundle)
    options = CalibrationOptions(max_clips=4, thresholds=GateThresholds(min_speedup=1e6), reps=1)
    report = calibrate_int8(bundle, CLIPS, options=options)
    assert not report["accepted"] and report["reasons"] and "speed-up" in report["reasons"][0]
    assert snapshot(bundle) == before
    assert not (bundle / INT8_ONNX).exists()
    forced = calibrate_int8(bundle, CLIPS, options=CalibrationOptions(max_clips=4, reps=1, force=True,
                                                                      thresholds=GateThresholds(min_speedup=1e6)))
    assert forced["accepted"] and forced["forced"] and (bundle / INT8_ONNX).is_file()
    assert forced["int8"]["cache_hit"]  # same videos, seed and options: the ranges came from the cache


def test_held_out_list_must_not_overlap_calibration(bundle, tmp_path):
    (tmp_path / "held.txt").write_text(f"{CLIPS / 'stgcn_clean_and_jerk.mp4'} 0\n")
    with pytest.raises(ConfigError, match="also calibration videos"):
        calibrate_int8(bundle, CLIPS, held_out=tmp_path / "held.txt")


def test_confidence_temperature_goes_into_the_table_and_manifest(bundle, tmp_path):
    names = [c.name for c in CLASSES]
    rows = [("mmaction2_demo_arm_wrestling.mp4", "arm wrestling"), ("stgcn_clean_and_jerk.mp4", "clean and jerk"),
            ("mmaction2_test_cleaning_pool.mp4", "cleaning pool"), ("mmaction2_test_v_ApplyEyeMakeup.avi", "applying eye makeup"),
            ("v_Basketball_g01_c02.mp4", "playing basketball")]
    (tmp_path / "val.txt").write_text("".join(f"{f} {names.index(n)}\n" for f, n in rows))
    report = calibrate_confidence(bundle, tmp_path / "val.txt", root=CLIPS)
    assert report["clips"] == 5 and report["nll_after"] <= report["nll_before"] + 1e-9
    table = load_labels(bundle / "labels.npz")
    assert table.temperature == pytest.approx(report["temperature"], rel=1e-4)
    assert mf.verify_bundle(bundle)["confidence"]["temperature"] == report["temperature"]


def test_calibrate_command(bundle, tmp_path):
    proc = run("calibrate", "--bundle", str(bundle), "--videos", str(CLIPS), "--max-clips", "4", "--min-speedup", "1000",
               "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert "rejected, the bundle is unchanged (speed-up" in proc.stdout and (tmp_path / "r.json").is_file()
    assert_one_line_error(run("calibrate", "--bundle", str(bundle), "--videos", str(tmp_path / "none")), 1,
                          "no such video folder or list")
    assert_one_line_error(run("calibrate", "--bundle", str(bundle)), 1, "--videos")


def test_file_hash_helper_is_sha256(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    assert mf.sha256_file(tmp_path / "x") == hashlib.sha256(b"abc").hexdigest()


def test_runtime_picks_the_kept_int8_model_and_runs_it_unchanged(bundle):
    from froster_edge.errors import MissingCapability
    from froster_edge.runtime.backends import open_backend

    manifest = mf.verify_bundle(bundle)
    with pytest.raises(MissingCapability, match="no INT8 model"):
        open_backend("ort-cpu-int8", bundle, manifest, log=lambda m: None)
    calibrate_int8(bundle, CLIPS, options=CalibrationOptions(max_clips=4, reps=1, thresholds=GateThresholds(0.0, 0.0)))
    manifest = mf.verify_bundle(bundle)
    opened = open_backend("auto", bundle, manifest, log=lambda m: None)
    assert opened.backend.name == "ort-cpu-int8"
    clips = sample_clips(gather_videos(CLIPS), 4, 64, 2, seed=5).frames[:1]
    direct = ort.InferenceSession(str(bundle / INT8_ONNX), providers=["CPUExecutionProvider"]).run(None, {"frames": clips})[0]
    np.testing.assert_array_equal(opened.backend(clips), direct)
    opened.backend.close()
