"""AdamW parameter groups and the warm-up + cosine schedule, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from froster_edge.config import OptimConfig
from froster_edge.model.factory import create_distiller
from froster_edge.train.optim import WarmupCosine, build_optimizer, param_groups, set_lr


def test_no_decay_on_1d_params_and_biases(tiny_config):
    """The reference's ZERO_WD_1D_PARAM: len(p.shape) == 1 or a bias; the 0-D logit_scale is decayed."""
    torch.manual_seed(0)
    d = create_distiller(tiny_config)
    decay, no_decay = param_groups(d, 0.01)
    named = {id(p): n for n, p in d.named_parameters()}
    decay_names = {named[id(p)] for p in decay["params"]}
    no_decay_names = {named[id(p)] for p in no_decay["params"]}
    trainable = {n for n, p in d.named_parameters() if p.requires_grad}
    assert decay_names | no_decay_names == trainable and not decay_names & no_decay_names
    assert not any(n.startswith("teacher.") for n in trainable)
    assert "student.clip.logit_scale" in decay_names  # 0-D: decayed, as in the reference
    assert "student.clip.visual.class_embedding" in no_decay_names  # 1-D
    assert "student.clip.ln_final.weight" in no_decay_names
    assert all(n.endswith(".bias") or p.ndim == 1 for n, p in d.named_parameters() if n in no_decay_names)
    assert all(not n.endswith(".bias") and p.ndim != 1 for n, p in d.named_parameters() if n in decay_names)
    assert "projector_v.fc1.weight" in decay_names and "student.clip.visual.proj" in decay_names
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.01, 0.0)


def test_adamw_decays_only_the_decay_group(tiny_config):
    """With zero gradients AdamW's update is the decoupled decay alone: p <- p * (1 - lr * wd)."""
    torch.manual_seed(0)
    d = create_distiller(tiny_config)
    opt = build_optimizer(d, OptimConfig(lr=0.1, weight_decay=0.5))
    before = {n: p.detach().clone() for n, p in d.named_parameters() if p.requires_grad}
    for p in d.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in d.named_parameters():
        if not p.requires_grad:
            continue
        factor = 1.0 if (p.ndim == 1 or n.endswith(".bias")) else 1 - 0.1 * 0.5
        torch.testing.assert_close(p.detach(), before[n] * factor, msg=n)


def test_schedule_equals_hand_computation():
    lr, start, end, steps_per_epoch, epochs, warm = 1e-3, 1e-5, 2e-6, 5, 10, 2
    s = WarmupCosine.from_config(OptimConfig(lr=lr, warmup_start_lr=start, end_lr=end, warmup_epochs=warm), steps_per_epoch, epochs)
    # warm-up: 10 steps, linear from 1e-5 towards 1e-3 by (1e-3 - 1e-5) / 10 = 9.9e-5 per step
    for k in range(10):
        assert s(k) == pytest.approx(1e-5 + 9.9e-5 * k, rel=1e-9)
    assert s(10) == pytest.approx(1e-3)  # the peak, where the cosine starts
    # cosine over the remaining 40 steps: at step 30, half-way, the mean of peak and end
    assert s(30) == pytest.approx((1e-3 + 2e-6) / 2, rel=1e-9)
    # step 20: a quarter of the way, cos(pi/4) = sqrt(2)/2
    assert s(20) == pytest.approx(2e-6 + (1e-3 - 2e-6) * (1 + math.sqrt(2) / 2) / 2, rel=1e-9)
    assert s(49) > end and s(50) == pytest.approx(end)
    lrs = [s(k) for k in range(50)]
    assert all(a < b for a, b in zip(lrs[:10], lrs[1:11], strict=False)) and all(a > b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_schedule_without_warmup_and_fractional_warmup():
    s = WarmupCosine.from_config(OptimConfig(lr=1.0, warmup_start_lr=0.0, end_lr=0.0, warmup_epochs=0), 4, 2)
    assert s(0) == 1.0 and s(4) == pytest.approx(0.5)
    s = WarmupCosine.from_config(OptimConfig(lr=1.0, warmup_start_lr=0.0, end_lr=0.0, warmup_epochs=0.5), 4, 2)
    assert s(1) == pytest.approx(0.5) and s(2) == pytest.approx(1.0)


def test_set_lr_reaches_every_group(tiny_config):
    torch.manual_seed(0)
    opt = build_optimizer(create_distiller(tiny_config), OptimConfig())
    set_lr(opt, 0.123)
    assert [g["lr"] for g in opt.param_groups] == [0.123, 0.123]


def test_recipe_defaults_are_the_papers():
    c = OptimConfig()
    assert (c.lr, c.warmup_start_lr, c.end_lr, c.warmup_epochs) == (3.33e-6, 3.33e-8, 3.33e-8, 2.0)
    assert (c.weight_decay, c.clip_grad_norm, c.betas) == (0.01, 1.0, [0.9, 0.999])
