"""INT8 calibration behind its gate, and confidence temperature: real clips, tiny exported student."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from froster_edge.bundle import manifest as mf
from froster_edge.bundle.labels import load_labels
from froster_edge.calibration.calibrate import INT8_ONNX, calibrate_confidence, calibrate_int8
from froster_edge.calibration.clips import sample_clips
from froster_edge.calibration.confidence import expected_calibration_error, fit_temperature, nll
from froster_edge.calibration.cpu_features import detect
from froster_edge.calibration.int8 import linear_nodes, quantize_video_encoder
from froster_edge.calibration.options import CalibrationOptions, GateThresholds
from froster_edge.calibration.variants import candidates
from froster_edge.data.lists import gather_videos
from froster_edge.errors import ConfigError
from froster_edge.sampling import SamplingConfig

from .helpers import CLASSES, CLIPS, VIDEOS, assert_one_line_error, cli, export_tiny

SPEC4 = SamplingConfig().spec(4)  # the tiny bundle's T = 4, reference rule


@pytest.fixture(scope="module")
def float_bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cal") / "bundle"
    export_tiny(out, streams=1, fp16=False, max_parity_clips=2)
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
    a = sample_clips(items, SPEC4, 64, 6, seed=3, clips_per_video=2)
    b = sample_clips(items, SPEC4, 64, 6, seed=3, clips_per_video=2)
    assert a.frames.shape == (6, 4, 64, 64, 3) and a.frames.dtype == np.uint8
    assert a.digest() == b.digest() and a.sources == b.sources
    assert a.digest() != sample_clips(items, SPEC4, 64, 6, seed=4, clips_per_video=2).digest()


def test_qdq_model_keeps_sensitive_ops_float_and_the_cache_reproduces_it(float_bundle, tmp_path):
    clips = sample_clips(gather_videos(CLIPS), SPEC4, 64, 6, seed=0, clips_per_video=2)
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


def test_an_onnxruntime_without_the_range_cache_quantizes_the_same_model(float_bundle, tmp_path, monkeypatch):
    """onnxruntime 1.23 (the newest with a Python 3.10 build, JetPack 6's Python) has no
    `calibration_cache_path`: quantization still runs, calibrating anew, and gives the very model
    that the cached route gives."""
    import inspect

    import onnxruntime.quantization as q

    clips = sample_clips(gather_videos(CLIPS), SPEC4, 64, 2, seed=0, clips_per_video=1)
    cached = quantize_video_encoder(float_bundle / mf.VIDEO_ONNX, tmp_path / "cached.onnx", clips.frames, 1,
                                    tmp_path / "cache", clips.digest(), variant="s8s8", target="tensorrt")
    real = q.quantize_static
    params = [p for name, p in inspect.signature(real).parameters.items() if name != "calibration_cache_path"]
    seen = []

    def quantize_static_1_23(*args, **kwargs):
        seen.append(sorted(kwargs))
        return real(*args, **kwargs)

    quantize_static_1_23.__signature__ = inspect.Signature(params)
    monkeypatch.setattr(q, "quantize_static", quantize_static_1_23)
    info = quantize_video_encoder(float_bundle / mf.VIDEO_ONNX, tmp_path / "old.onnx", clips.frames, 1, tmp_path / "none",
                                  clips.digest(), variant="s8s8", target="tensorrt")
    assert seen and all("calibration_cache_path" not in kw for kw in seen)
    assert info["cache"] is None and info["cache_hit"] is None and not (tmp_path / "none").exists()
    assert cached["cache"] and cached["cache_hit"] is False
    assert (tmp_path / "old.onnx").read_bytes() == (tmp_path / "cached.onnx").read_bytes()


def _optimized_ops(path: Path, tmp_path: Path) -> dict[str, int]:
    """The op counts of the graph ONNX Runtime's CPU provider actually runs (after its fusions)."""
    so = ort.SessionOptions()
    so.optimized_model_filepath = str(tmp_path / f"{path.stem}.optimized.onnx")
    ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    counts: dict[str, int] = {}
    for n in onnx.load(so.optimized_model_filepath).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


def test_onnxruntime_form_runs_each_linear_layer_as_one_qgemm_and_tensorrt_form_stays_plain_qdq(float_bundle, tmp_path):
    """For ONNX Runtime every quantized linear layer is a Gemm whose output stays float and whose bias
    is int32, which ORT fuses into one QGemm; for TensorRT every output is requantized (plain QDQ)."""
    clips = sample_clips(gather_videos(CLIPS), SPEC4, 64, 2, seed=0, clips_per_video=1)
    fp32 = onnx.load(str(float_bundle / mf.VIDEO_ONNX))
    linear, _ = linear_nodes(fp32)
    weight_matmuls = [n for n in fp32.graph.node if n.name in linear and n.op_type == "MatMul"]  # the Conv is the patch embedding
    forms = {}
    for target in ("onnxruntime", "tensorrt"):
        path = tmp_path / f"{target}.onnx"
        forms[target] = quantize_video_encoder(float_bundle / mf.VIDEO_ONNX, path, clips.frames, 1, tmp_path / "cache",
                                               clips.digest(), variant="u8s8-7bit", target=target)
    assert "QGemm" in forms["onnxruntime"]["linear_layers"] and "plain QDQ" in forms["tensorrt"]["linear_layers"]

    model = onnx.load(str(tmp_path / "onnxruntime.onnx"))
    producers = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name: t for t in model.graph.initializer}
    consumers = {i for n in model.graph.node if n.op_type == "QuantizeLinear" for i in n.input[:1]}
    gemms = [n for n in model.graph.node if n.op_type == "Gemm" and producers.get(n.input[0]) is not None
             and producers[n.input[0]].op_type == "DequantizeLinear"]
    assert len(gemms) == len(weight_matmuls) - 1  # every linear layer but the projection
    for g in gemms:
        assert g.output[0] not in consumers, f"{g.name}: its output was requantized"
        bias = producers[g.input[2]]
        assert bias.op_type == "DequantizeLinear" and inits[bias.input[0]].data_type == onnx.TensorProto.INT32
    assert _optimized_ops(tmp_path / "onnxruntime.onnx", tmp_path).get("QGemm") == len(gemms)

    plain = _optimized_ops(tmp_path / "tensorrt.onnx", tmp_path)
    assert "QGemm" not in plain and plain.get("QLinearMatMul", 0) == len(weight_matmuls) - 1


def test_dynamic_variant_quantizes_weights_to_7_bits_and_attention_per_call(float_bundle, tmp_path):
    """The 7-bit dynamic variant with attention: every linear layer but the projection becomes an integer
    op on per-call quantized activations, its weights within 7 bits (no u8 x s8 pair can saturate int16)
    and within half a step of the float weights per output channel; the attention products of two
    activations quantize both sides per call; LayerNorm, Softmax and the projection stay float."""
    clips = sample_clips(gather_videos(CLIPS), SPEC4, 64, 2, seed=0, clips_per_video=1)
    info = quantize_video_encoder(float_bundle / mf.VIDEO_ONNX, tmp_path / "d.onnx", clips.frames, 1, tmp_path / "cache",
                                  clips.digest(), variant="u8s8-7bit-dynamic-attn")
    assert info["route"] == "onnxruntime-dynamic" and info["cache_hit"] is None and not (tmp_path / "cache").exists()
    fp32 = onnx.load(str(float_bundle / mf.VIDEO_ONNX))
    floats = {t.name: onnx.numpy_helper.to_array(t) for t in fp32.graph.initializer}
    linear, projection = linear_nodes(fp32)
    matmuls = [n for n in fp32.graph.node if n.op_type == "MatMul"]
    weight_matmuls = [n for n in matmuls if n.name in linear]
    model = onnx.load(str(tmp_path / "d.onnx"))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    integer = [n for n in model.graph.node if n.op_type in ("MatMulInteger", "ConvInteger")]
    assert len(integer) == len(linear) - 1 + len(matmuls) - len(weight_matmuls) == info["quantized_nodes"]
    weighted = 0
    for node in integer:
        assert producers[node.input[0]].op_type == "DynamicQuantizeLinear"  # range measured per call
        if node.input[1] not in inits:  # an attention product: its other activation quantized per call too
            assert producers[node.input[1]].op_type == "DynamicQuantizeLinear"
            continue
        weighted += 1
        q = inits[node.input[1]]
        assert q.dtype == np.int8 and np.abs(q).max() <= 64 and 255 * 64 * 2 <= 32767
        if node.op_type == "MatMulInteger":
            assert not inits[node.input[3]].any()  # symmetric weights
            scale, w = inits[node.input[1].replace("_quantized", "_scale")], floats[node.input[1].removesuffix("_quantized")]
            assert scale.shape == (w.shape[1],)  # per output channel
            assert np.all(np.abs(q * scale - w) <= scale / 2 + 1e-7)
    assert weighted == len(linear) - 1
    assert [n.name for n in model.graph.node if n.op_type == "MatMul"] == [projection]
    assert {n.op_type for n in model.graph.node} >= {"LayerNormalization", "Softmax"}
    out = ort.InferenceSession(str(tmp_path / "d.onnx"), providers=["CPUExecutionProvider"]).run(None, {"frames": clips.frames[:1]})[0]
    ref = ort.InferenceSession(str(float_bundle / mf.VIDEO_ONNX), providers=["CPUExecutionProvider"]).run(None, {"frames": clips.frames[:1]})[0]
    assert out.shape == ref.shape and np.isfinite(out).all()


def split_videos(tmp_path: Path, held: list[str]) -> tuple[Path, Path]:
    """Folders of calibration and held-out videos (symlinks to the real clips), disjoint."""
    calib, gate = tmp_path / "calib", tmp_path / "held"
    for d in (calib, gate):
        d.mkdir()
    for v in VIDEOS:
        (gate if v.name in held else calib).joinpath(v.name).symlink_to(v.resolve())
    return calib, gate


def direct_figures(fp32: Path, int8: Path, clips: np.ndarray, embeddings: np.ndarray) -> tuple[float, float, float]:
    """Agreement, min and mean cosine of INT8 to fp32, computed here without the gate's code."""
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (fp32, int8)]
    ref, got = (np.concatenate([s.run(None, {"frames": c[None]})[0] for c in clips]).astype(np.float64) for s in sessions)
    cos = np.einsum("nd,nd->n", ref, got) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    agree = np.argmax(ref @ embeddings.T, axis=1) == np.argmax(got @ embeddings.T, axis=1)
    return float(agree.mean()), float(cos.min()), float(cos.mean())


def test_calibrate_chooses_for_this_cpu_and_records_what_a_direct_comparison_finds(bundle, tmp_path):
    calib_dir, held_dir = split_videos(tmp_path, ["stgcn_clean_and_jerk.mp4", "mmaction2_test_cleaning_pool.mp4"])
    # the default agreement and cosine thresholds; no speed threshold: tests never judge timings
    # ONNX Runtime's variants for this CPU (OpenVINO's candidates: tests/test_openvino.py)
    options = CalibrationOptions(max_clips=6, reps=1, openvino=False, thresholds=GateThresholds(min_speedup=0.0))
    report = calibrate_int8(bundle, calib_dir, held_out=held_dir, options=options)

    here = detect()
    assert report["cpu"] == here.to_dict()
    tried = [c["name"] for c in report["candidates"]]
    assert tried == [v.name for v in candidates(here)[0]]
    if here.saturates_u8s8 is not False:  # AVX2 without VNNI (this machine): no full 8-bit u8 x s8
        assert all(c["reduce_range"] or c["weights"] == "uint8" for c in report["candidates"])
    # one calibration for all static candidates: the first computed the ranges, the others read them;
    # dynamic ones have no ranges
    static = [c["cache_hit"] for c in report["candidates"] if not c["dynamic"]]
    assert static == [False] + [True] * (len(static) - 1)
    assert all(c["cache_hit"] is None for c in report["candidates"] if c["dynamic"])
    assert len(list((bundle / "calibration").iterdir())) == 1

    calib = sample_clips(gather_videos(calib_dir), SPEC4, 64, options.max_clips, options.seed, options.clips_per_video)
    assert calib.digest() == report["calibration"]["digest"]
    held = sample_clips(gather_videos(held_dir), SPEC4, 64, options.max_held_out, options.seed, options.held_out_views,
                        random_start=False).frames
    assert report["gate"]["held_out_clips"] == len(held) == 6
    with np.load(bundle / "labels.npz") as table:
        embeddings = table["embeddings"].astype(np.float64)
    passed = []
    for c in report["candidates"]:
        model = tmp_path / f"{c['name']}.onnx"  # rebuilt from the cached ranges: the model the gate measured
        quantize_video_encoder(bundle / mf.VIDEO_ONNX, model, calib.frames, 1, bundle / "calibration", calib.digest(),
                               variant=c["name"])
        agreement, min_cos, mean_cos = direct_figures(bundle / mf.VIDEO_ONNX, model, held, embeddings)
        assert c["top1_agreement"] == pytest.approx(agreement, abs=1e-9), c["name"]
        assert c["min_cosine"] == pytest.approx(min_cos, abs=1e-5) and c["mean_cosine"] == pytest.approx(mean_cos, abs=1e-5)
        assert c["passed"] == (agreement >= 0.95 and min_cos >= 0.99), c
        if c["passed"]:
            passed.append(c)
        if c["name"] == report["variant"] and report["accepted"]:
            assert model.read_bytes() == (bundle / INT8_ONNX).read_bytes()
    if passed:  # kept: the fastest of those that passed, with its figures and the CPU in the manifest
        assert report["accepted"] and report["variant"] == min(passed, key=lambda c: c["int8_ms"])["name"]
        section = mf.verify_bundle(bundle)["int8"]
        assert section["gate"] == report["gate"] and section["cpu"] == here.to_dict()
        assert section["variant"] == report["variant"] and section["candidates"] == report["candidates"]
        assert report["variant"] in section["why"] and "fastest" in section["why"]
    else:  # refused: every candidate's figures and reasons are in the report, the bundle has no INT8 model
        assert not report["accepted"] and not (bundle / INT8_ONNX).exists()
        assert all(c["reasons"] for c in report["candidates"]) and "no candidate passed" in report["why"]


def test_a_failed_gate_leaves_the_float_bundle_untouched(bundle):
    before = snapshot(bundle)
    options = CalibrationOptions(max_clips=4, thresholds=GateThresholds(min_speedup=1e6), reps=1)
    report = calibrate_int8(bundle, CLIPS, options=options)
    assert not report["accepted"] and report["reasons"] and "speed-up" in report["reasons"][-1]
    assert all(any("speed-up" in r for r in c["reasons"]) for c in report["candidates"])
    assert snapshot(bundle) == before
    assert not (bundle / INT8_ONNX).exists()
    # a cosine no model reaches: forced, the most faithful candidate is kept with its reasons
    forced = calibrate_int8(bundle, CLIPS, options=CalibrationOptions(max_clips=4, reps=1, force=True, variants=("s8s8", "u8u8"),
                                                                      thresholds=GateThresholds(0.0, 0.0, min_cosine=1.5)))
    assert forced["accepted"] and forced["forced"] and (bundle / INT8_ONNX).is_file()
    assert [c["name"] for c in forced["candidates"]] == ["s8s8", "u8u8"]
    best = max(forced["candidates"], key=lambda c: (c["top1_agreement"], c["min_cosine"]))
    assert forced["variant"] == best["name"] and "min cosine" in forced["reasons"][0]
    assert forced["int8"]["cache_hit"]  # same videos and seed: the ranges came from the cache
    assert mf.verify_bundle(bundle)["int8"]["forced"]


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
    proc = cli("calibrate", "--bundle", str(bundle), "--videos", str(CLIPS), "--max-clips", "4", "--min-speedup", "1000",
               "--variant", "u8u8", "--variant", "s8s8-7bit", "--json", str(tmp_path / "r.json"))
    assert proc.returncode == 0, proc.stderr
    assert "rejected, the bundle is unchanged (speed-up" in proc.stdout and (tmp_path / "r.json").is_file()
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("  candidate u8u8: agreement") and lines[1].startswith("  candidate s8s8-7bit: agreement")
    assert "CPU: " in proc.stderr
    with pytest.raises(ConfigError, match="unknown INT8 variant"):  # the CLI refuses it at parse time (test_cli_policy)
        calibrate_int8(bundle, CLIPS, options=CalibrationOptions(variants=("u4s4",)))
    assert_one_line_error(cli("calibrate", "--bundle", str(bundle), "--videos", str(tmp_path / "none")), 1,
                          "no such video, folder or list")
    assert_one_line_error(cli("calibrate", "--bundle", str(bundle)), 1, "--videos")


def test_file_hash_helper_is_sha256(tmp_path):
    (tmp_path / "x").write_bytes(b"abc")
    assert mf.sha256_file(tmp_path / "x") == hashlib.sha256(b"abc").hexdigest()


def test_runtime_picks_the_kept_int8_model_and_runs_it_unchanged(bundle, caplog):
    from froster_edge.errors import MissingCapability
    from froster_edge.runtime.backends import open_backend

    manifest = mf.verify_bundle(bundle)
    with pytest.raises(MissingCapability, match="no INT8 model"):
        open_backend("ort-cpu-int8", bundle, manifest)
    calibrate_int8(bundle, CLIPS, options=CalibrationOptions(max_clips=4, reps=1, openvino=False,
                                                             thresholds=GateThresholds(0.0, 0.0, -1.0)))
    manifest = mf.verify_bundle(bundle)
    caplog.set_level(logging.INFO, logger="froster_edge")
    opened = open_backend("auto", bundle, manifest)
    assert opened.backend.name == "ort-cpu-int8" and not [m for m in caplog.messages if "warning" in m]  # gated on this CPU
    # the same bundle on a CPU with another 8-bit dot product than the one its gate ran on: one warning line
    elsewhere = "avx512_vnni" if detect().dot_product != "avx512_vnni" else "avx2"
    moved = {**manifest, "int8": {**manifest["int8"], "cpu": {**manifest["int8"]["cpu"], "dot_product": elsewhere}}}
    caplog.clear()
    open_backend("ort-cpu-int8", bundle, moved).backend.close()
    warnings = [m for m in caplog.messages if "warning" in m]
    assert len(warnings) == 1 and elsewhere in warnings[0] and detect().dot_product in warnings[0]
    clips = sample_clips(gather_videos(CLIPS), SPEC4, 64, 2, seed=5).frames[:1]
    direct = ort.InferenceSession(str(bundle / INT8_ONNX), providers=["CPUExecutionProvider"]).run(None, {"frames": clips})[0]
    np.testing.assert_array_equal(opened.backend(clips), direct)
    opened.backend.close()
