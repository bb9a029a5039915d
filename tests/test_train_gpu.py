"""Training on a CUDA GPU: AMP (bf16, fp16 with GradScaler), a whole tiny run, NCCL. Skip without a GPU.

Run on a GPU machine by scripts/device_check.sh.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from froster_edge.config import OptimConfig
from froster_edge.model.checkpoint import load_student
from froster_edge.train import ddp
from froster_edge.train.config import load_recipe
from froster_edge.train.loop import Trainer
from froster_edge.train.optim import build_optimizer
from froster_edge.train.state import list_states, read_state
from froster_edge.train.step import autocast_dtype, class_prompt_tokens, step_prompts, train_step

from .helpers import ROOT, make_distiller

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine (torch.cuda.is_available() is False)"),
]


def _sgd_update(cfg, classes, frames, labels, amp):
    """The gradient of one step (SGD, lr 1, no clipping) with autocast `amp`, on the GPU."""
    d = make_distiller(cfg).cuda().train()
    tokens = step_prompts(class_prompt_tokens(d.student.tokenize, classes), 0, 0).cuda()
    params = [p for p in d.parameters() if p.requires_grad]
    before = torch.cat([p.detach().flatten() for p in params])
    out = train_step(d, torch.optim.SGD(params, lr=1.0), [(frames.cuda(), labels.cuda())], tokens, params,
                     amp_dtype=amp, clip_grad_norm=None)
    return before - torch.cat([p.detach().flatten() for p in params]), out


def test_bf16_step_follows_the_fp32_gradient(tiny_batch):  # noqa: F811
    if not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    cfg, classes, frames, labels = tiny_batch
    g32, o32 = _sgd_update(cfg, classes, frames, labels, None)
    g16, o16 = _sgd_update(cfg, classes, frames, labels, torch.bfloat16)
    assert torch.nn.functional.cosine_similarity(g32, g16, dim=0).item() > 0.98
    torch.testing.assert_close(o16.terms, o32.terms, rtol=0.05, atol=2e-3)


def test_fp16_with_grad_scaler_trains(tiny_batch):  # noqa: F811
    cfg, classes, frames, labels = tiny_batch
    d = make_distiller(cfg, noise=0.05).cuda().train()
    tokens = step_prompts(class_prompt_tokens(d.student.tokenize, classes), 0, 0).cuda()
    params = [p for p in d.parameters() if p.requires_grad]
    opt = build_optimizer(d, OptimConfig(lr=1e-4))
    scaler = torch.amp.GradScaler("cuda")
    first = None
    for _ in range(16):  # early steps may overflow and be skipped while the scale settles
        out = train_step(d, opt, [(frames.cuda(), labels.cuda())], tokens, params, amp_dtype=torch.float16, scaler=scaler)
        first = out.terms if first is None else first
    assert all(torch.isfinite(p).all() for p in params)
    assert out.terms[0] < first[0]
    assert 1 <= scaler.get_scale() <= 2.0**16


def test_amp_auto_picks_bf16_where_supported():
    dev = torch.device("cuda")
    assert autocast_dtype("auto", dev) == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    assert autocast_dtype("off", dev) is None


def test_tiny_run_on_gpu(tmp_path):
    cfg = load_recipe(ROOT / "configs" / "tiny.yaml", ["train.device=cuda", "train.amp=auto", "train.epochs=2",
                                                       "train.eval_every=2", "train.progress=false", "data.num_workers=2"])
    trainer = Trainer(cfg, tmp_path / "run", ddp.setup("cuda"))
    final = trainer.fit()
    student = load_student(final)
    assert all(torch.isfinite(v).all() for v in student.clip.state_dict().values())
    state = read_state(list_states(tmp_path / "run" / "state")[0])
    assert state.step == 4 and state.rng[0]["cuda"]  # the CUDA generator is part of the checkpoint


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs 2 GPUs; this machine has fewer")
def test_nccl_two_processes(tmp_path):
    sets = [a for s in ["train.device=cuda", "train.epochs=1", "train.batch_size=4", "train.eval_every=0",
                        "train.progress=false", "data.num_workers=1"] for a in ("--set", s)]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "froster_edge.cli", "train", "configs/tiny.yaml", *sets, "--out", str(tmp_path / "run")],
                          cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout + proc.stderr
    load_student(tmp_path / "run" / "student")
