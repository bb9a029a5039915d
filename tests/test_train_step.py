"""The training step on real clips: it overfits a fixed batch, and accumulation equals one big batch."""

from __future__ import annotations

import pytest
import torch

from froster_edge.config import OptimConfig
from froster_edge.errors import ConfigError
from froster_edge.prompts import TEMPLATES, template_prompt
from froster_edge.train.optim import build_optimizer
from froster_edge.train.step import autocast_dtype, class_prompt_tokens, step_prompts, template_index, train_step

from .helpers import make_distiller


def test_overfits_a_fixed_batch(tiny_batch):
    cfg, classes, frames, labels = tiny_batch
    d = make_distiller(cfg, noise=0.05).train()
    tokens = step_prompts(class_prompt_tokens(d.student.tokenize, classes), 0, 0)  # fixed prompts: a fixed batch
    params = [p for p in d.parameters() if p.requires_grad]
    opt = build_optimizer(d, OptimConfig(lr=1e-4))
    history = [train_step(d, opt, [(frames, labels)], tokens, params).terms for _ in range(12)]
    with torch.no_grad():
        final = d(frames, labels, tokens)
    first = history[0]
    for i, name in enumerate(("total", "ce", "vision", "text")):
        after = getattr(final, name).item()
        assert after < 0.8 * first[i].item(), f"{name}: {first[i].item():.4f} -> {after:.4f}"
    assert final.ce.item() < 0.5 * first[1].item()


def test_accumulation_equals_the_whole_batch(tiny_batch):
    """Two micro-batches of 2 give the gradient of one batch of 4 (SGD lr 1: the update is the gradient)."""
    cfg, classes, frames, labels = tiny_batch
    updates = []
    for split in ([slice(0, 4)], [slice(0, 2), slice(2, 4)]):
        d = make_distiller(cfg).train()
        tokens = step_prompts(class_prompt_tokens(d.student.tokenize, classes), 0, 3)
        params = [p for p in d.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        opt = torch.optim.SGD(params, lr=1.0)
        out = train_step(d, opt, [(frames[s], labels[s]) for s in split], tokens, params, clip_grad_norm=None)
        updates.append(([b - p.detach() for b, p in zip(before, params, strict=False)], out))
    (whole, a), (accum, b) = updates
    for g1, g2 in zip(whole, accum, strict=False):  # equal up to float32 summation order, relative to the tensor's scale
        assert (g2 - g1).abs().max() <= 1e-5 * g1.abs().max() + 1e-8
    torch.testing.assert_close(b.terms, a.terms, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(b.grad_norm, a.grad_norm, rtol=1e-5, atol=0)


def test_training_prompts_are_one_template_plus_the_bare_text(tiny_batch):
    cfg, classes, _, _ = tiny_batch
    d = make_distiller(cfg)
    all_tokens = class_prompt_tokens(d.student.tokenize, classes)
    assert all_tokens.shape[:2] == (len(classes), len(TEMPLATES) + 1)
    for step in (0, 5):
        k = template_index(0, step)
        want = d.student.tokenize([p for c in classes for p in (template_prompt(c, TEMPLATES[k]), c.bare)])
        assert torch.equal(step_prompts(all_tokens, 0, step).reshape(-1, want.shape[-1]), want)
    picks = [template_index(0, s) for s in range(200)]
    assert picks == [template_index(0, s) for s in range(200)]  # a function of (seed, step)
    assert len(set(picks)) == len(TEMPLATES)  # every template gets used
    assert picks != [template_index(1, s) for s in range(200)]


def test_amp_modes():
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None and autocast_dtype("off", cpu) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA GPU"):
        autocast_dtype("fp16", cpu)


def test_activation_checkpointing_gives_the_same_step(tiny_batch):
    """student.grad_checkpointing trades memory for recomputation, not for a different gradient."""
    from dataclasses import replace

    cfg, classes, frames, labels = tiny_batch
    updates = []
    for ckpt in (False, True):
        c = replace(cfg, student=replace(cfg.student, grad_checkpointing=ckpt))
        d = make_distiller(c).train()
        assert d.student.grad_checkpointing is ckpt
        tokens = step_prompts(class_prompt_tokens(d.student.tokenize, classes), 0, 1)
        params = [p for p in d.parameters() if p.requires_grad]
        before = [p.detach().clone() for p in params]
        train_step(d, torch.optim.SGD(params, lr=1.0), [(frames, labels)], tokens, params, clip_grad_norm=None)
        updates.append([b - p.detach() for b, p in zip(before, params, strict=False)])
    for g1, g2 in zip(*updates, strict=False):
        assert (g2 - g1).abs().max() <= 1e-5 * g1.abs().max() + 1e-8
