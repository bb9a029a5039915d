"""Faults in `froster-edge run`: bad sources, bad tables, tampered bundles, signals, tables swapped mid-run.

Every case ends within a timeout with an exit code and, for bad input, one line on stderr;
nothing prints a traceback. Long runs use --realtime --loop (a camera that never ends).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import pytest

from froster_edge.bundle.labels import load_labels

from .helpers import CLIPS, SHARED_DATA, LiveRun, assert_one_line_error, cli

CLIP = CLIPS / "stgcn_clean_and_jerk.mp4"


def test_a_file_that_is_not_a_video(tiny_bundle, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(os.urandom(5000))
    assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--source", str(bad)), 1, "bad.mp4 cannot be opened as a video")


def test_a_missing_camera_index(tiny_bundle):
    if Path("/dev/video7").exists():
        pytest.skip("this machine has a camera 7")
    assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--source", "7"), 1, "camera 7 cannot be opened")


def test_bad_arguments_say_so_in_one_line(tiny_bundle, tmp_path):
    assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--source", str(tmp_path / "none.mp4")), 1,
                          "no such video file")
    assert_one_line_error(cli("run", "--bundle", str(tmp_path), "--source", str(CLIP)), 1, "not a froster-edge bundle")
    usage = cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP), "--backend", "gpu")
    assert usage.returncode == 2 and "'gpu' is not one of" in usage.stderr, usage.stderr  # a parser usage error


def test_a_table_of_another_model_and_a_tampered_bundle_are_refused_at_start(tiny_bundle, tmp_path):
    table = load_labels(tiny_bundle / "labels.npz")
    replace(table, fingerprint="0" * 64).save(tmp_path / "other.npz")
    assert_one_line_error(cli("run", "--bundle", str(tiny_bundle), "--source", str(CLIP), "--labels", str(tmp_path / "other.npz")),
                          1, "not by this bundle's model")
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    data = bytearray((copy / "video_encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "video_encoder.onnx").write_bytes(bytes(data))
    assert_one_line_error(cli("run", "--bundle", str(copy), "--source", str(CLIP)), 1,
                          "video_encoder.onnx does not match its sha256")


def test_a_file_corrupt_midway_gives_its_decisions_the_stats_and_one_error(tiny_bundle):
    corrupt = SHARED_DATA / "video_robustness" / "decord" / "corrupted.mp4"  # 50 frames declared, 28 decodable, 10 fps
    if not corrupt.is_file():
        pytest.skip("../shared/data/video_robustness/decord/corrupted.mp4 is not present on this machine")
    proc = cli("run", "--bundle", str(tiny_bundle), "--source", str(corrupt), "--jsonl", "--sample-fps", "5", "--hop", "1")
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stdout.splitlines()) == (28 // 2 - 4) // 1 + 1  # frames 0, 2, ..., 26 sampled; T=4, hop 1
    assert "Traceback" not in proc.stderr and "28 frames read" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("froster-edge: error:") and "corrupt video, decoding stopped after 28 frames" in last


def test_sigint_stops_cleanly_and_prints_the_stats(tiny_bundle, tmp_path):
    live = LiveRun("--bundle", str(tiny_bundle), "--source", str(CLIP), "--realtime", "--loop", "--sample-fps", "8",
                   "--hop", "1", "--stats-json", str(tmp_path / "stats.json"))
    for _ in range(3):
        live.decision()
    assert live.stop(signal.SIGINT) == 0, live.stderr
    err = "\n".join(live.stderr)
    assert "Traceback" not in err and "froster-edge: stopped" in err and "capture_to_decision" in err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["interrupted"] and stats["decisions"] >= 3 and stats["streams"][0]["ended"] == "stopped"


def test_label_table_swapped_mid_run_good_then_bad(tiny_bundle, tmp_path):
    labels = tmp_path / "labels.npz"
    shutil.copy(tiny_bundle / "labels.npz", labels)
    table = load_labels(labels)
    three = replace(table, names=table.names[:3], texts=table.texts[:3], prompts=table.prompts[:3],
                    embeddings=table.embeddings[:3])
    live = LiveRun("--bundle", str(tiny_bundle), "--source", str(CLIP), "--labels", str(labels), "--realtime", "--loop",
                   "--sample-fps", "8", "--hop", "1", "--smoothing", "none", "--top-k", "5",
                   "--stats-json", str(tmp_path / "stats.json"))
    assert len(live.decision()["top"]) == 5
    three.save(labels)
    live.wait_stderr("labels: swapped in")
    while len(live.decision()["top"]) != 3:  # decisions made before the swap may still arrive
        pass
    d = live.decision()
    assert {t["label"] for t in d["top"]} == set(table.names[:3])
    assert sum(t["score"] for t in d["top"]) == pytest.approx(1.0, abs=1e-5)  # softmax over the new 3 classes
    replace(three, fingerprint="0" * 64).save(labels)
    live.wait_stderr("labels: rejected the new table")
    for _ in range(3):
        assert {t["label"] for t in live.decision()["top"]} == set(table.names[:3])  # the good table stays
    assert live.stop() == 0
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["label_swaps"] == 1 and stats["label_rejections"] == 1
    assert "Traceback" not in "\n".join(live.stderr)
