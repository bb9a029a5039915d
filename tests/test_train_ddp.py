"""Two processes (torchrun, gloo on the CPU) train the same steps as one process with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys

import torch

from froster_edge.model.checkpoint import PROJECTORS_FILE, load_tensors
from froster_edge.model.factory import create_distiller
from froster_edge.train.config import load_recipe
from froster_edge.train.state import list_states

from .helpers import ROOT

# 5 clips, global batch 4: one step per epoch, 3 epochs; the 2-process run gives each process 2 clips a step
RECIPE = ["train.epochs=3", "train.batch_size=4", "train.eval_every=0", "train.progress=false", "data.num_workers=0",
          "train.average_from=null", "optim.warmup_epochs=1"]


def _run(out, nproc: int) -> None:
    sets = [a for s in RECIPE for a in ("--set", s)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 \
        else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([*launcher, "-m", "froster_edge.cli", "train", "configs/tiny.yaml", *sets, "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_two_gloo_processes_match_one(tmp_path):
    one = _run(tmp_path / "one", 1)
    two = _run(tmp_path / "two", 2)
    assert "1 process(es) x 1 micro-batch(es) of 4" in one.stdout + one.stderr
    assert "2 process(es) x 1 micro-batch(es) of 2" in two.stdout + two.stderr
    (a,), (b,) = list_states(tmp_path / "one" / "state"), list_states(tmp_path / "two" / "state")
    assert a.name == b.name == "step_00000003"
    cfg = load_recipe(ROOT / "configs" / "tiny.yaml")
    torch.manual_seed(cfg.train.seed)  # the initial weights both runs started from
    init = create_distiller(cfg.student, cfg.distill)
    starts = {"model.safetensors": init.student.clip.state_dict(),
              PROJECTORS_FILE: {f"{n}.{k}": v for n in ("projector_v", "projector_t")
                                for k, v in getattr(init, n).state_dict().items()}}
    checked = 0
    for name, start in starts.items():
        wa, wb = load_tensors(a / "student", name), load_tensors(b / "student", name)
        for k, w0 in start.items():
            update, diff = wa[k] - w0, (wa[k] - wb[k]).abs()
            if k.startswith("transformer.") and k.endswith("attn.in_proj_bias"):
                # the text tower's key bias has no true gradient (softmax ignores a shift shared by all
                # keys): AdamW turns its float noise into lr-sized steps that differ from run to run
                width = w0.shape[0] // 3
                assert diff[width:2 * width].max() <= 0.25 * update.abs().max(), k
                diff = torch.cat([diff[:width], diff[2 * width:]])
            # the two runs agree to 1% of what training changed (half the batch would be ~100% off)
            assert diff.max() <= 0.01 * update.abs().max() + 1e-9, k
            checked += update.abs().max() > 0
    assert checked > 30  # most tensors did move
