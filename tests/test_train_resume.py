"""Kill training (SIGKILL) mid-run, resume, and end in the same state as a run that was never killed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from froster_edge.model.checkpoint import PROJECTORS_FILE, WEIGHTS_FILE, load_tensors
from froster_edge.train.state import list_states, read_state

from .helpers import ROOT, sigkill

# 5 clips, global batch 2: 2 steps an epoch, 3 epochs, a state after every step (keep the last 2)
RECIPE = ["train.epochs=3", "train.eval_every=0", "train.progress=false", "data.num_workers=1",
          "train.save_every_steps=1", "train.keep_states=2"]


def _cmd(out, *extra: str) -> list[str]:
    sets = [a for s in RECIPE for a in ("--set", s)]
    return [sys.executable, "-m", "froster_edge.cli", "train", "configs/tiny.yaml", *sets, "--out", str(out), *extra]


ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _steps(run) -> dict[int, float]:
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {m["step"]: m["loss"] for m in lines if "kind" not in m}


def test_kill_and_resume_ends_like_an_uninterrupted_run(tmp_path):
    plain, killed = tmp_path / "plain", tmp_path / "killed"
    proc = subprocess.run(_cmd(plain), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]

    victim = subprocess.Popen(_cmd(killed), cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        # kill inside epoch 2, as soon as its first step's state exists: mid-epoch, mid-whatever-comes-next
        while not (killed / "state" / "step_00000003").exists():
            assert victim.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        sigkill(victim)
    assert not (killed / "student").exists()
    done_before = max(_steps(killed))
    assert 3 <= done_before < 6

    proc = subprocess.run(_cmd(killed, "--resume"), cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed from step_0000000" in proc.stdout + proc.stderr

    # the same final training state: weights, projectors, optimizer moments, sampler position
    a, b = read_state(list_states(plain / "state")[0]), read_state(list_states(killed / "state")[0])
    assert a.step == b.step == 6 and (a.epoch, a.epoch_step) == (b.epoch, b.epoch_step) == (3, 0)
    for name, ta, tb in (("student", a.student, b.student), ("projectors", a.projectors, b.projectors)):
        for k in ta:
            torch.testing.assert_close(tb[k], ta[k], rtol=0, atol=1e-7, msg=f"{name} {k}")
    for pid, st in a.optimizer["state"].items():
        for k, v in st.items():
            torch.testing.assert_close(b.optimizer["state"][pid][k], v, rtol=0, atol=1e-7)
    # the same final student (the average of epochs 2..3) and the same loss at every step
    for name in (WEIGHTS_FILE, PROJECTORS_FILE):
        wa, wb = load_tensors(plain / "student", name), load_tensors(killed / "student", name)
        for k in wa:
            torch.testing.assert_close(wb[k], wa[k], rtol=0, atol=1e-7)
    la, lb = _steps(plain), _steps(killed)
    assert sorted(la) == sorted(lb) == [1, 2, 3, 4, 5, 6]
    assert all(abs(la[s] - lb[s]) < 1e-6 for s in la), (la, lb)
