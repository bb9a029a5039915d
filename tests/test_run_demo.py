"""`make demo` as a user runs it, with a local checkpoint file instead of the downloaded weights: it
exports a bundle once, then streams the repository's clip through `froster-edge run`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .conftest import ROOT, TINY_MODEL

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
VENV = Path(sys.executable).parent.parent


def make_demo(**variables: str) -> subprocess.CompletedProcess:
    # -o: the venv is installed already; never let a test run pip
    args = ["make", "-s", "-o", str(VENV / ".installed-dev"), "demo", f"VENV={VENV}"]
    args += [f"{k}={v}" for k, v in variables.items()]
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=400)


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
    assert len(lines) == (19 - 8) // 2 + 1, proc.stdout  # 300 frames at 29.97 fps: 19 sampled, T=8, hop 2
    assert float(lines[0].split("s")[0]) == pytest.approx(7 * 16 / 29.97, abs=0.05)  # the 8th sampled frame

    again = make_demo(**vars_)
    assert again.returncode == 0 and "exported before" in again.stdout and "wrote" not in again.stdout

