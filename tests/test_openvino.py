"""OpenVINO beside ONNX Runtime: the ov backends, calibrate's OpenVINO candidates, the kept IR in the bundle.

Real graphs (the tiny student exported to ONNX), real clips, the real openvino and nncf; skipped
with the reason where openvino is not installed (pip install 'froster-edge[openvino,nncf]').
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

ov = pytest.importorskip("openvino", reason="openvino is not installed: pip install 'froster-edge[openvino,nncf]'")

from froster_edge.bundle import manifest as mf  # noqa: E402
from froster_edge.bundle.sessions import onnx_video_encoder  # noqa: E402
from froster_edge.calibration import calibrate as cal  # noqa: E402
from froster_edge.calibration.clips import sample_clips  # noqa: E402
from froster_edge.calibration.gate import decide  # noqa: E402
from froster_edge.calibration.options import CalibrationOptions, GateThresholds  # noqa: E402
from froster_edge.calibration.ov_route import OV_INT8_BIN, OV_INT8_XML  # noqa: E402
from froster_edge.data.lists import gather_videos  # noqa: E402
from froster_edge.runtime.backends import open_backend  # noqa: E402

from .helpers import CLIPS, assert_one_line_error, cli, run_python  # noqa: E402
from .test_torch_free import _run_without_torch  # noqa: E402

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"
OPEN_GATE = GateThresholds(0.0, 0.0, -1.0)


@pytest.fixture(scope="module")
def float_bundle(tiny_bundle, tmp_path_factory) -> Path:
    """A copy of the session's tiny bundle (2 streams per call): the ov backend writes its cache into it."""
    out = tmp_path_factory.mktemp("ov") / "bundle"
    shutil.copytree(tiny_bundle, out)
    return out


@pytest.fixture(scope="module")
def ov_bundle(float_bundle, tmp_path_factory) -> Path:
    """A copy whose kept model is the NNCF INT8 IR (the only candidate asked for, the gate open)."""
    out = tmp_path_factory.mktemp("ov_kept") / "bundle"
    shutil.copytree(float_bundle, out)
    cal.calibrate_int8(out, CLIPS, options=CalibrationOptions(max_clips=4, max_held_out=3, variants=("ov-int8",),
                                                              thresholds=OPEN_GATE))
    return out


def real_clips(bundle: Path, n: int = 4) -> np.ndarray:
    manifest = mf.read_manifest(bundle)
    return sample_clips(gather_videos(CLIPS), mf.sampling_spec(manifest), manifest["preprocessing"]["image_size"], n,
                        seed=5).frames


def in_streams(encode, clips: np.ndarray, streams: int) -> np.ndarray:
    """The reference way to batch: whole calls of `streams` clips, the last one padded by repeating its clip."""
    out = []
    for i in range(0, len(clips), streams):
        batch = clips[i:i + streams]
        pad = np.repeat(batch[-1:], streams - len(batch), axis=0)
        out.append(encode(np.concatenate([batch, pad]))[:len(batch)])
    return np.concatenate(out)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)


def test_ov_backend_equals_onnx_runtime_fp32_on_real_clips(float_bundle):
    clips = real_clips(float_bundle, 5)
    want = in_streams(onnx_video_encoder(float_bundle / mf.VIDEO_ONNX), clips, 2)
    opened = open_backend("ov", float_bundle, mf.read_manifest(float_bundle))
    assert opened.backend.streams == 2 and "(fp32)" in opened.backend.detail
    got = in_streams(opened.backend, clips, opened.backend.streams)
    assert got.shape == want.shape and np.abs(want).max() > 0.1  # embeddings of substance, not zeros
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert (float_bundle / "engines" / "openvino").is_dir()  # the compiled-model cache: not a hashed bundle file
    mf.verify_bundle(float_bundle)


def test_openvino_candidates_go_through_the_one_gate_with_the_ort_variants(float_bundle, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    shutil.copytree(float_bundle, bundle)
    before = (bundle / mf.MANIFEST_FILE).read_bytes()
    calls = []
    real = cal.measure_candidates
    monkeypatch.setattr(cal, "measure_candidates", lambda f, encoders, *a, **k: calls.append(sorted(encoders)) or real(f, encoders, *a, **k))
    strict = GateThresholds(0.0, 1000.0, -1.0)  # nothing is 1000x faster: every candidate fails on speed
    report = cal.calibrate_int8(bundle, CLIPS, options=CalibrationOptions(
        max_clips=4, max_held_out=3, variants=("s8s8", "ov-int8"), thresholds=strict))
    assert calls == [["ov-int8", "s8s8"]]  # one interleaved measurement of both runtimes' candidates
    by_name = {c["name"]: c for c in report["candidates"]}
    assert by_name["ov-int8"]["route"] == "openvino" and by_name["s8s8"]["route"] == "onnxruntime"
    for c in by_name.values():  # the verdicts are decide()'s on the recorded figures
        assert c["reasons"] == decide(c, strict)[1] and not c["passed"] and "speed-up" in c["reasons"][0]
    assert not report["accepted"] and (bundle / mf.MANIFEST_FILE).read_bytes() == before
    assert not (bundle / OV_INT8_XML).exists() and not list(bundle.glob(".*tmp*"))


def test_the_kept_ir_is_hashed_and_is_the_model_the_backend_runs(ov_bundle):
    manifest = mf.verify_bundle(ov_bundle)
    section = manifest["int8"]
    assert (section["route"], section["backend"], section["device"], section["precision"]) == ("openvino", "ov-int8", "CPU", "fp32")
    assert section["files"] == [OV_INT8_XML, OV_INT8_BIN] and {OV_INT8_XML, OV_INT8_BIN} <= set(manifest["files"])
    assert "openvino" in section["int8"]["versions"] and "nncf" in section["int8"]["versions"]
    clips = real_clips(ov_bundle)
    # the IR compiled by plain OpenVINO at fp32: quantized (differs from float) yet close to float
    compiled = ov.Core().compile_model(str(ov_bundle / OV_INT8_XML), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    plain = in_streams(lambda x: compiled(x)[0], clips, 2)
    ref = in_streams(onnx_video_encoder(ov_bundle / mf.VIDEO_ONNX), clips, 2)
    assert np.abs(plain - ref).max() > 1e-4 and cosine(plain, ref).min() > 0.9
    opened = open_backend("auto", ov_bundle, manifest)
    assert opened.backend.name == "ov-int8"
    np.testing.assert_allclose(in_streams(opened.backend, clips, 2), plain, atol=1e-5, rtol=0)


def test_a_later_calibration_that_keeps_onnx_runtime_drops_the_earlier_ir(ov_bundle, tmp_path):
    """The IR an earlier calibration kept is no longer the bundle's once another route is kept: not
    in the manifest (which verifies whole), not on disk, and auto runs the new route."""
    bundle = tmp_path / "bundle"
    shutil.copytree(ov_bundle, bundle)
    report = cal.calibrate_int8(bundle, CLIPS, options=CalibrationOptions(max_clips=4, max_held_out=3, variants=("s8s8",),
                                                                           thresholds=OPEN_GATE))
    assert report["accepted"] and report["route"] == "onnxruntime"
    manifest = mf.verify_bundle(bundle)
    assert manifest["int8"]["files"] == [cal.INT8_ONNX] and cal.INT8_ONNX in manifest["files"]
    assert not {OV_INT8_XML, OV_INT8_BIN} & set(manifest["files"])
    assert not (bundle / OV_INT8_XML).exists() and not (bundle / OV_INT8_BIN).exists()
    assert open_backend("auto", bundle, manifest).backend.name == "ort-cpu-int8"


def test_a_bundle_kept_on_openvino_runs_with_auto_where_torch_cannot_be_imported(ov_bundle, tmp_path):
    stats = tmp_path / "stats.json"
    proc = _run_without_torch("run", "--bundle", str(ov_bundle), "--source", str(CLIP), "--max-decisions", "3", "--jsonl",
                              "--stats-json", str(stats))
    assert proc.returncode == 0, proc.stderr
    decisions = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(decisions) == 3
    assert json.loads(stats.read_text())["backend"] == "ov-int8"


@pytest.mark.parametrize("name", [OV_INT8_XML, OV_INT8_BIN])
def test_a_tampered_ir_file_is_refused(ov_bundle, tmp_path, name):
    bundle = tmp_path / "bundle"
    shutil.copytree(ov_bundle, bundle)
    data = bytearray((bundle / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit in the middle of the graph or its weights
    (bundle / name).write_bytes(bytes(data))
    proc = cli("run", "--bundle", str(bundle), "--source", str(CLIP), "--max-decisions", "1", "--backend", "auto")
    assert_one_line_error(proc, 1, f"{name} does not match its sha256")


def test_a_device_openvino_does_not_list_is_refused_in_one_line(float_bundle):
    missing = next(d for d in ("NPU", "GPU") if not any(x.split(".")[0] == d for x in ov.Core().available_devices))
    proc = cli("run", "--bundle", str(float_bundle), "--source", str(CLIP), "--max-decisions", "1", "--backend", "ov",
               "--ov-device", missing)
    assert_one_line_error(proc, 3, f"OpenVINO lists no {missing} device here")


def test_without_openvino_ov_exits_3_with_the_install_line_and_auto_falls_back(ov_bundle, tmp_path):
    block = ("import sys\n"
             "class _NoOpenVINO:\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name.split('.')[0] == 'openvino':\n"
             "            raise ImportError('openvino is blocked')\n"
             "sys.meta_path.insert(0, _NoOpenVINO())\n"
             "from froster_edge.cli import main\n")
    args = ["run", "--bundle", str(ov_bundle), "--source", str(CLIP), "--max-decisions", "1"]
    proc = run_python(block + f"sys.argv = ['froster-edge', *{args + ['--backend', 'ov']!r}]\nmain()\n", check=False)
    assert_one_line_error(proc, 3, "pip install 'froster-edge[openvino]'")
    proc = run_python(block + f"sys.argv = ['froster-edge', *{args + ['--jsonl']!r}]\nmain()\n", check=False)
    assert proc.returncode == 0, proc.stderr
    assert "backend ort-cpu (auto; passed over:" in proc.stderr and "ov-int8: openvino is not installed" in proc.stderr


def test_the_gate_refuses_figures_that_are_not_numbers():
    figures = {"top1_agreement": 1.0, "min_cosine": float("nan"), "speedup": 2.0}
    accepted, reasons = decide(figures, GateThresholds())
    assert not accepted and "min_cosine" in reasons[0]
    assert decide({**figures, "min_cosine": 0.999}, GateThresholds()) == (True, [])


def test_bench_measures_openvino_beside_onnx_runtime(ov_bundle):
    from froster_edge.runtime.bench import BenchOptions, bench, table

    result = bench(ov_bundle, BenchOptions(clip=CLIP, reps=1, latency_calls=2, realtime_check=False))
    rows = result["backends"]
    assert rows["ov-int8"]["available"] and rows["ov"]["available"] and rows["ort-cpu"]["available"]
    assert "OpenVINO CPU" in rows["ov-int8"]["detail"] and rows["ov-int8"]["pipeline_decisions_per_s"] > 0
    assert not rows["ort-cpu-int8"]["available"] and "no INT8 model" in rows["ort-cpu-int8"]["reason"]
    assert result["machine"]["openvino"] == ov.__version__.split("-")[0] and "ov-int8" in table(result)
