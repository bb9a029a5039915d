"""`make demo` as a user runs it, with a local checkpoint file instead of the downloaded weights: it
exports a bundle once, then streams the repository's clip through `froster-edge run`; and without
any way to get the weights, the offline pipeline (train the tiny recipe, export, run) to its end."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .helpers import ROOT, TINY_MODEL

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
VENV = Path(sys.executable).parent.parent


def sampled(T: int, frames: int = 300, fps: float = 29.97) -> int:
    """Frames the reference rule samples from the demo clip (300 frames at 29.97 fps): a window of
    T x 16 frames at 30 fps scaled to the clip's rate, T frames spread over it, floor(k x P) taken."""
    period = (16 * T * fps / 30 - 1) / (T - 1)
    return sum(1 for k in range(frames) if math.floor(k * period) < frames)


def make_demo(env: dict | None = None, timeout: float = 400, **variables: str) -> subprocess.CompletedProcess:
    # -o: the venv is installed already; never let a test run pip
    args = ["make", "-s", "-o", str(VENV / ".installed-dev"), "demo", f"VENV={VENV}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def test_make_demo_with_a_local_checkpoint(tmp_path):
    from froster_edge.model.clip import build_clip, resolve_model_config

    torch.manual_seed(0)
    torch.save(build_clip(resolve_model_config(str(TINY_MODEL))).state_dict(), tmp_path / "tiny.bin")
    bundle = tmp_path / "demo-bundle"
    vars_ = {"DEMO_MODEL": str(TINY_MODEL.relative_to(ROOT)), "DEMO_PRETRAINED": str(tmp_path / "tiny.bin"),
             "DEMO_BUNDLE": str(bundle)}
    proc = make_demo(**vars_)
    assert proc.returncode == 0, proc.stderr
    assert (bundle / "manifest.json").is_file()
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\s+\d+\.\d\ds  \S", line)]
    assert len(lines) == (sampled(8) - 8) // 2 + 1, proc.stdout  # T=8, hop 2
    # the first decision is eval's first view of the mp4, 0 18 ... 108 112: the reference's window
    # clamped (tests/test_fidelity.py checks it against the reference), decided at frame 112
    assert float(lines[0].split("s")[0]) == pytest.approx(112 / 29.97, abs=0.005)

    again = make_demo(**vars_)
    assert again.returncode == 0 and "exported before" in again.stdout and "wrote" not in again.stdout



@pytest.mark.timeout(1800)  # about 2 minutes on 2 idle cores (training, ONNX export); far more on a loaded machine
def test_make_demo_without_reachable_weights_runs_the_offline_pipeline(tmp_path):
    """The hub endpoint is a closed local port and the cache is empty: the demo says so in one
    line, trains the tiny recipe, exports it and streams the clip, whatever this machine's network."""
    from .helpers import free_port

    env = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}", "HF_HOME": str(tmp_path / "hf")}
    offline = tmp_path / "offline"
    vars_ = {"DEMO_OFFLINE": str(offline), "DEMO_BUNDLE": str(tmp_path / "never")}
    proc = make_demo(env=env, timeout=1200, **vars_)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = [line for line in proc.stdout.splitlines() if "unreachable" in line]
    assert len(said) == 1 and "ViT-B-16/openai" in said[0] and "offline pipeline" in said[0], proc.stdout
    assert any("not accuracy" in line for line in proc.stdout.splitlines())
    assert not (tmp_path / "never").exists()
    manifest = json.loads((offline / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["source"] == {"student": f"{offline}/train/student"}
    T = manifest["preprocessing"]["num_frames"]
    lines = [line for line in proc.stdout.splitlines() if re.match(r"\s+\d+\.\d\ds  \S", line)]
    assert len(lines) == (sampled(T) - T) // 2 + 1, proc.stdout  # hop 2

    again = make_demo(env=env, timeout=600, **vars_)
    assert again.returncode == 0 and "trained and exported before" in again.stdout, again.stderr[-3000:]
    assert len([line for line in again.stdout.splitlines() if re.match(r"\s+\d+\.\d\ds  \S", line)]) == len(lines)
