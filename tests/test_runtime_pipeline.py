"""Real clips through the whole runtime with the tiny exported student, against a direct encoder call.

The reference in each test is computed here, independently: frames decoded with OpenCV, the
sampled indices from the reference arithmetic (floor(k * P), P = (T * 16 * fps / 30 - 1) / (T - 1),
or fps / --sample-fps), windows of T every hop,
ONNX Runtime called directly on the bundle's graph, softmax and smoothing by hand.
"""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from froster_edge.bundle.labels import load_labels
from froster_edge.runtime.options import ClassifierOptions, RunOptions, SamplingOptions
from froster_edge.runtime.pipeline import Pipeline
from froster_edge.video import resize_center_crop

from .helpers import CLIP_B, CLIPS, Collect, assert_one_line_error, cli, run_python

CLIP_A = CLIPS / "stgcn_clean_and_jerk.mp4"  # 300 frames at 29.97 fps
T, SIZE, HOP = 4, 64, 2


def decode(path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path))
    fps, frames = cap.get(cv2.CAP_PROP_FPS), []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps


def reference_clips(path, hop: int = HOP, sample_fps: float | None = None) -> list[tuple[int, np.ndarray]]:
    """(newest frame index, uint8 clip (T, S, S, 3)) of every decision the runtime should make.

    By the bundle's spec on these files (mp4, avi: a stream duration), the first decision is eval's
    first view: the reference's selective window of ceil(16 (T - 1) fps / 30) frames plus the one
    after clamps its frames; it is taken when that last frame arrives."""
    frames, fps = decode(path)
    idx = grid(len(frames), fps, sample_fps)
    out = []
    for n in range(T, len(idx) + 1, hop):  # a decision after sampled frame T, T + hop, ...
        window = idx[n - T:n]
        if n == T and not sample_fps:
            window = first_view(idx, fps)
        out.append((window[-1], np.stack([resize_center_crop(frames[i], SIZE) for i in window])))
    return out


def grid(count: int, fps: float, sample_fps: float | None = None) -> list[int]:
    """The frames the reference samples at its period, floor(k x P)."""
    period = fps / sample_fps if sample_fps else (T * 16 * fps / 30 - 1) / (T - 1)
    idx, k = [], 0
    while (i := math.floor(k * period + 1e-9)) < count:
        idx.append(i)
        k += 1
    return idx


def first_view(idx: list[int], fps: float) -> list[int]:
    """Eval's first view: the grid's first T frames clamped to the selective window's last frame."""
    return [min(i, math.ceil(16 * (T - 1) * fps / 30 - 1e-9)) for i in idx[:T]]


def direct_probs(bundle, clips: list[np.ndarray]) -> np.ndarray:
    """ONNX Runtime on the bundle's graph, 2 clips per call as exported, then softmax by hand."""
    session = ort.InferenceSession(str(bundle / "video_encoder.onnx"), providers=["CPUExecutionProvider"])
    embs = [session.run(None, {"frames": np.stack([c, c])})[0][0] for c in clips]
    table = load_labels(bundle / "labels.npz")
    logits = table.logit_scale * np.asarray(embs, np.float64) @ table.embeddings.astype(np.float64).T / table.temperature
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_jsonl_decisions_count_and_equal_a_direct_encoder_call(tiny_bundle, tmp_path):
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP_A), "--source", str(CLIP_B), "--jsonl",
               "--smoothing", "none", "--top-k", "12", "--stats-json", str(tmp_path / "stats.json"))
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    table = load_labels(tiny_bundle / "labels.npz")
    for stream, path in enumerate([CLIP_A, CLIP_B]):
        got = [d for d in lines if d["stream"] == stream]
        want = reference_clips(path)
        assert len(got) == len(want) and len(want) == {0: 6, 1: 4}[stream]  # (15-4)//2+1 and (10-4)//2+1
        assert [d["frame"] for d in got] == [i for i, _ in want]
        probs = direct_probs(tiny_bundle, [c for _, c in want])
        for d, p in zip(got, probs, strict=False):
            scores = {t["label"]: t["score"] for t in d["top"]}
            np.testing.assert_allclose([scores[n] for n in table.names], p, atol=2e-6)
            assert d["label"] == table.names[int(np.argmax(p))] and d["source"] == str(path)
            assert d["latency_ms"]["capture_to_decision"] >= d["latency_ms"]["encode"] > 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["decisions"] == 10 and stats["encoder_calls"] == 6  # two streams batched per call while both run
    sampled = []  # the grid's frames and the first view's: every frame that went into a clip
    for path in (CLIP_A, CLIP_B):
        frames, fps = decode(path)
        sampled.append(len(set(grid(len(frames), fps)) | set(first_view(grid(len(frames), fps), fps))))
    assert [s["frames_sampled"] for s in stats["streams"]] == sampled and min(sampled) >= 10
    assert [s["frames_read"] for s in stats["streams"]] == [300, 164]
    assert all(s["frames_dropped"] == 0 and s["clips_skipped"] == 0 for s in stats["streams"])
    for stage in ("read", "preprocess", "encode", "classify", "capture_to_decision"):
        assert stats["stages"][stage]["n"] > 0 and stats["stages"][stage]["p50_ms"] >= 0
    assert "10 decisions" in proc.stderr and "capture_to_decision" in proc.stderr


@pytest.mark.parametrize("smoothing", ["ema", "mean"])
def test_smoothing_over_decisions_matches_the_hand_computation(tiny_bundle, smoothing):
    sink = Collect()
    options = RunOptions(sources=[str(CLIP_A)], sampling=SamplingOptions(hop=1, fps=3.0),
                         classifier=ClassifierOptions(smoothing=smoothing, ema_alpha=0.25, window=3, top_k=12))
    Pipeline(tiny_bundle, options, [sink]).run()
    want = reference_clips(CLIP_A, hop=1, sample_fps=3.0)
    probs = direct_probs(tiny_bundle, [c for _, c in want])
    names = load_labels(tiny_bundle / "labels.npz").names
    assert len(sink.decisions) == len(want) == 31 - T + 1  # frames floor(k * 9.99), k = 0..30
    s = None
    for j, (d, p) in enumerate(zip(sink.decisions, probs, strict=False)):
        if smoothing == "ema":
            s = p if s is None else 0.25 * p + 0.75 * s
        else:
            s = probs[max(0, j - 2):j + 1].mean(0)
        got = dict(d.top)
        np.testing.assert_allclose([got[n] for n in names], s, atol=1e-6)


def test_the_runtime_imports_no_torch(tiny_bundle):
    code = (
        "import sys\n"
        "from froster_edge.cli import app\n"
        f"try:\n    app(['run', '--bundle', {str(tiny_bundle)!r}, '--source', {str(CLIP_A)!r}, '--jsonl', '--max-decisions', '2'])\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        "bad = [m for m in ('torch', 'open_clip') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "print('torch-free')\n"
    )
    proc = run_python(code)
    assert proc.stdout.count('"stream"') == 2 and proc.stdout.strip().endswith("torch-free")


@pytest.mark.parametrize("command", ["run", "bench"])
def test_help_has_examples(command):
    from typer.testing import CliRunner

    from froster_edge.cli import app

    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "Example" in result.output and "--bundle" in result.output


def test_torch_reference_backend_agrees_with_onnxruntime(tiny_bundle):
    results = {}
    for backend in ("torch", "ort-cpu"):
        sink = Collect()
        options = RunOptions(sources=[str(CLIP_B)], backend=backend,
                             classifier=ClassifierOptions(smoothing="none", top_k=12))
        pipeline = Pipeline(tiny_bundle, options, [sink])
        assert pipeline.backend.name == backend
        pipeline.run()
        results[backend] = np.array([[dict(d.top)[n] for n in sorted(dict(d.top))] for d in sink.decisions])
    assert results["torch"].shape == (4, 12)
    np.testing.assert_allclose(results["torch"], results["ort-cpu"], atol=1e-4)


def test_record_writes_every_frame_annotated(tiny_bundle, tmp_path):
    out = tmp_path / "annotated.mp4"
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP_B), "--record", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 4  # one readable line per decision
    frames, fps = decode(out)
    source, _ = decode(CLIP_B)
    assert len(frames) == len(source) and fps == pytest.approx(25.0)
    assert frames[0].shape == source[0].shape
    last = frames[-1][:40].astype(int)  # the overlay band: the latest decision's text on black
    assert (last < 30).mean() > 0.5 and (last > 200).any()
    assert not list(tmp_path.glob(".*partial*")), "the temporary file is renamed into place"


def test_missing_capabilities_exit_3_with_one_line(tiny_bundle):
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP_B), "--show")
    assert_one_line_error(proc, 3, "--show needs")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP_B), "--backend", "ort-cuda"),
                              3, "backend ort-cuda is not available here")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP_B), "--backend", "trt"),
                              3, "tensorrt is not installed")


def test_bench_measures_each_available_backend_in_one_run(tiny_bundle, tmp_path):
    proc = cli("bench", "--bundle", str(tiny_bundle), "--clip", str(CLIP_A), "--reps", "2", "--realtime-decisions", "2",
               "--json", str(tmp_path / "bench.json"))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["streams"] == 2 and result["clips_per_pipeline_run"] == 2 * 6  # 2 copies of the clip, 6 decisions each
    cpu = result["backends"]["ort-cpu"]
    assert cpu["available"] and len(cpu["pairs"]) == 2
    ratios = sorted(p["pipeline"] / p["alone"] for p in cpu["pairs"])
    assert cpu["pipeline_vs_alone"] == pytest.approx((ratios[0] + ratios[1]) / 2, rel=1e-2)  # median of the pairs
    assert cpu["encoder_p95_ms"] >= cpu["encoder_p50_ms"] > 0
    rt = cpu["realtime"]
    assert rt["hop"] == 2 and rt["decisions"] == 2  # a ~1 ms encoder keeps up at the default hop
    assert rt["c2d_p50_vs_encoder_p50"] == pytest.approx(rt["capture_to_decision_p50_ms"] / cpu["encoder_p50_ms"], rel=1e-3)
    for name, row in result["backends"].items():
        assert row["available"] or row["reason"], name
    assert "ort-cpu" in proc.stdout and result["machine"]["cpu_cores"] >= 1
