"""Runtime parts against small hand computations: sampling, ring buffer, classifier, hot-swap, slots, stats."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from froster_edge.bundle.labels import LabelTable, load_labels
from froster_edge.errors import ConfigError, MissingCapability
from froster_edge.runtime.assembly import ClipAssembler, ClipRing, SampleRule
from froster_edge.runtime.backends import probe, video_engine
from froster_edge.runtime.classifier import Classifier, LabelWatcher
from froster_edge.runtime.options import ClassifierOptions, RunOptions, SamplingOptions, check_options
from froster_edge.runtime.sources import END, FrameSlot, parse_source
from froster_edge.runtime.stats import LatencyWindow
from froster_edge.sampling import Ticker

from .helpers import CLIPS


def expected_indices(num_frames: int, period: float) -> list[int]:
    """The frames a tick every `period` frames lands on as the reference truncates: floor(k * period)."""
    out, k = [], 0
    while (i := math.floor(k * period + 1e-9)) < num_frames:
        out.append(i)
        k += 1
    return out


@pytest.mark.parametrize("fps", [30.0, 30000 / 1001, 25.0, 28.0, 60.0, 12.0])
def test_file_sampling_follows_the_training_spec(fps):
    # a bundle from before sampling specs ({stride, reference_fps}) reads as the reference rule
    rule = SampleRule.from_options(SamplingOptions(), {"num_frames": 8, "sampling": {"stride": 16, "reference_fps": 30.0}})
    period = rule.period_frames(fps)
    assert period == pytest.approx((128 * fps / 30 - 1) / 7)  # linspace(s, s + 128 fps/30 - 1, 8)
    ticker = rule.ticker(fps)
    taken = [i for i in range(1000) if ticker.take(float(i))]
    assert taken == expected_indices(1000, period)
    assert [i for i in range(1000) if ticker.is_sampled(i)] == taken  # the stateless check the file reader uses
    if fps == 30.0:
        assert taken[:9] == [0, 18, 36, 54, 72, 90, 108, 127, 145]


def test_the_real_time_check_picks_a_hop_the_encoder_keeps_up_with():
    from froster_edge.runtime.bench import keep_up_hop

    assert keep_up_hop(0.5, 1.875, 1.5, 2) == 2  # 2 / 1.875 = 1.07 s >= 0.75 s
    assert keep_up_hop(1.5, 1.875, 1.5, 2) == 5  # 1.5 * 1.5 s * 1.875 = 4.2 sampled frames
    assert keep_up_hop(0.001, 1.875, 1.5, 3) == 3


def test_subsample_and_target_fps_rules():
    assert SampleRule.from_options(SamplingOptions(subsample=4), {}).period_frames(25.0) == 4
    assert SampleRule.from_options(SamplingOptions(fps=5.0), {}).period_frames(25.0) == 5
    assert SampleRule.from_options(SamplingOptions(fps=100.0), {}).period_frames(25.0) == 1  # never above the source


def test_live_sampling_skips_missed_ticks_after_a_stall():
    ticker = Ticker(5.0)  # a tick every 5 frames of a 10 fps camera: every 0.5 s
    times = [0.0, 0.1, 0.49, 0.51, 0.9, 1.0, 3.2, 3.3, 3.5, 3.9, 4.0]
    taken = [t for t in times if ticker.take(t * 10)]
    assert taken == [0.0, 0.51, 1.0, 3.2, 3.5, 4.0]  # no burst after the 2 s gap


def test_ring_buffer_and_decision_arithmetic():
    ring = ClipRing(3, 2)
    for v in range(5):
        ring.push(np.full((2, 2, 3), v, np.uint8))
    assert ring.clip()[:, 0, 0, 0].tolist() == [2, 3, 4]
    for t, hop, n in [(4, 2, 19), (8, 2, 19), (8, 1, 8), (4, 3, 13), (8, 2, 7)]:
        a = ClipAssembler(t, 2, hop, 1.0)
        due = [i for i in range(n) if a.add(np.full((2, 2, 3), i % 256, np.uint8)) is not None]
        assert len(due) == max(0, (n - t) // hop + 1)
        assert due == [t - 1 + j * hop for j in range(len(due))]
    a = ClipAssembler(2, 2, 1, 1.0)
    a.add(np.zeros((2, 2, 3), np.uint8))
    a.restart()
    assert a.add(np.zeros((2, 2, 3), np.uint8)) is None  # a reconnect starts a new clip


def make_table(names: list[str], dim: int = 8, seed: int = 0, fingerprint: str = "f" * 64, scale: float = 50.0,
               temperature: float = 1.0) -> LabelTable:
    emb = np.random.default_rng(seed).normal(size=(len(names), dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return LabelTable(names=names, embeddings=emb, logit_scale=scale, fingerprint=fingerprint, temperature=temperature)


def hand_softmax(x: np.ndarray) -> np.ndarray:
    return np.array([math.exp(v - max(x)) for v in x]) / sum(math.exp(v - max(x)) for v in x)


def test_classifier_scores_smoothing_threshold_topk():
    table = make_table(["a", "b", "c", "d"], temperature=2.0)
    embs = np.random.default_rng(1).normal(size=(3, 8)).astype(np.float32) * 0.1
    probs = [hand_softmax(table.logit_scale * (table.embeddings.astype(np.float64) @ e.astype(np.float64)) / 2.0) for e in embs]

    ema = Classifier(table, ClassifierOptions(smoothing="ema", ema_alpha=0.3, top_k=2))
    s = None
    for e, p in zip(embs, probs, strict=False):
        got = ema([0], e[None])[0]
        s = p if s is None else 0.3 * p + 0.7 * s
        best = np.argsort(-s)[:2]
        assert [n for n, _ in got.top] == [table.names[i] for i in best]
        np.testing.assert_allclose([v for _, v in got.top], s[best], rtol=1e-9)

    mean = Classifier(table, ClassifierOptions(smoothing="mean", window=2, top_k=4))
    recent: deque = deque(maxlen=2)
    for e, p in zip(embs, probs, strict=False):
        recent.append(p)
        got = dict(mean([5], e[None])[0].top)
        want = np.mean(recent, axis=0)
        np.testing.assert_allclose([got[n] for n in table.names], want, rtol=1e-9)

    none = Classifier(table, ClassifierOptions(smoothing="none", threshold=0.99))
    out = none([0, 1], embs[:2])
    assert all(o.label == "unknown" and o.score < 0.99 for o in out)
    assert none([0], embs[:1])[0].top[0][1] == pytest.approx(max(probs[0]))
    sure = Classifier(table, ClassifierOptions(smoothing="none", threshold=0.0))
    assert sure([0], embs[:1])[0].label == table.names[int(np.argmax(probs[0]))]


def test_streams_are_smoothed_apart_and_a_new_table_resets_them():
    table = make_table(["a", "b", "c"])
    c = Classifier(table, ClassifierOptions(smoothing="ema", ema_alpha=0.5, top_k=3))
    e = np.random.default_rng(2).normal(size=(3, 8)).astype(np.float32) * 0.05
    c([0, 1], e[:2])
    alone = Classifier(table, ClassifierOptions(smoothing="ema", ema_alpha=0.5, top_k=3))
    alone([1], e[1:2])
    assert c([1], e[2:])[0] == alone([1], e[2:])[0]  # stream 1's EMA never saw stream 0's scores
    c.set_table(make_table(["x", "y"], seed=3))
    fresh = Classifier(make_table(["x", "y"], seed=3), ClassifierOptions(smoothing="ema", ema_alpha=0.5, top_k=3))
    assert c([0], e[:1])[0] == fresh([0], e[:1])[0]


def test_label_watcher_swaps_good_tables_and_rejects_bad_ones(tmp_path, caplog):
    path = tmp_path / "labels.npz"
    make_table(["a", "b"]).save(path)
    caplog.set_level(logging.INFO, logger="froster_edge")
    watcher = LabelWatcher(path, "f" * 64, 8)
    assert watcher.poll() is None  # unchanged
    make_table(["a", "b", "c"], seed=4).save(path)
    new = watcher.poll()
    assert new is not None and new.names == ["a", "b", "c"] and watcher.swaps == 1
    make_table(["z"], fingerprint="0" * 64).save(path)
    assert watcher.poll() is None and "not by this bundle's model" in caplog.messages[-1]
    make_table(["z"], dim=4).save(path)
    assert watcher.poll() is None and "4-d embeddings" in caplog.messages[-1]
    path.write_bytes(b"half a file")
    assert watcher.poll() is None and "not a readable label table" in caplog.messages[-1]
    assert watcher.poll() is None and watcher.rejected == 3  # a rejection is said once per change
    path.unlink()
    assert watcher.poll() is None and "was removed" in caplog.messages[-1]


def test_newest_frame_slot_drops_and_counts_while_the_blocking_slot_keeps_all():
    stop = threading.Event()
    newest = FrameSlot(keep_newest=True)
    for i in range(5):
        newest.put(i, stop)
    assert newest.take(0.1) == 4 and newest.dropped == 4
    assert newest.take(0.01) is None

    blocking = FrameSlot(keep_newest=False)
    got: list = []

    def consume():
        while (item := blocking.take(1.0)) is not END:
            if item is not None:
                got.append(item)
                time.sleep(0.001)

    t = threading.Thread(target=consume)
    t.start()
    for i in range(50):
        blocking.put(i, stop)
    blocking.put(END, stop)
    t.join(5)
    assert got == list(range(50)) and blocking.dropped == 0


def test_latency_window_is_bounded_and_matches_numpy():
    w = LatencyWindow(100)
    values = np.random.default_rng(0).uniform(0.001, 0.2, 250)
    for v in values:
        w.add(float(v))
    s = w.summary()
    assert s["n"] == 250 and len(w.samples) == 100
    assert s["p95_ms"] == pytest.approx(np.percentile(values[-100:] * 1000, 95), abs=1e-3)
    assert s["mean_ms"] == pytest.approx(values.mean() * 1000, abs=1e-3)


def test_source_parsing(tmp_path):
    assert parse_source("0").kind == "camera" and parse_source("0").target == 0
    assert parse_source("/dev/video2").kind == "camera"
    assert parse_source("rtsp://10.0.0.2/stream").kind == "url"
    assert parse_source(str(CLIPS / "stgcn_clean_and_jerk.mp4")).kind == "file"
    with pytest.raises(ConfigError, match="no such video file"):
        parse_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(ConfigError, match="unsupported scheme"):
        parse_source("ftp://host/x.mp4")


def test_option_checks():
    base = RunOptions(sources=["x"])
    with pytest.raises(ConfigError, match="not both"):
        check_options(replace(base, sampling=SamplingOptions(fps=2.0, subsample=3)))
    with pytest.raises(ConfigError, match="--backend"):
        check_options(replace(base, backend="cuda"))
    with pytest.raises(ConfigError, match="at least one --source"):
        check_options(RunOptions())


def test_engine_selection_needs_the_same_tensorrt_and_gpu(tiny_bundle):
    from froster_edge.bundle.manifest import read_manifest

    manifest = read_manifest(tiny_bundle)
    engines = [{"route": "tensorrt", "name": "video_encoder", "tensorrt": "10.3.0", "sm": "8.7", "file": "engines/a.plan"},
               {"route": "tensorrt", "name": "text_encoder", "tensorrt": "10.8.0", "sm": "9.0", "file": "engines/t.plan"},
               {"route": "tensorrt", "name": "video_encoder", "tensorrt": "10.8.0", "sm": "9.0", "file": "engines/b.plan"}]
    manifest = {**manifest, "engines": engines}
    assert video_engine(manifest, "10.8.0", "9.0")["file"] == "engines/b.plan"
    with pytest.raises(MissingCapability, match=r"TensorRT 10.8.0, sm 8.7.*TensorRT 10.3.0 sm 8.7, TensorRT 10.8.0 sm 9.0.*export --trt"):
        video_engine(manifest, "10.8.0", "8.7")
    assert probe("ort-cpu", tiny_bundle, manifest) is None
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert probe("trt", tiny_bundle, manifest) == "tensorrt is not installed"


def test_a_table_of_the_bundle_loads_with_its_fingerprint(tiny_bundle):
    from froster_edge.bundle.manifest import read_manifest

    model = read_manifest(tiny_bundle)["model"]
    table = load_labels(tiny_bundle / "labels.npz", model["fingerprint"], model["embed_dim"])
    assert table.names[0] == "arm wrestling"
