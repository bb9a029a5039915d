"""AdamW and its learning-rate schedule, as FROSTER's reference trains (PySlowFast semantics).

Weight decay on everything but 1-D parameters and biases (the reference's ZERO_WD_1D_PARAM), so the
0-D logit_scale IS decayed. The lr is set every step from the fractional epoch: linear warm-up,
then a half cosine to `end_lr` (COSINE_AFTER_WARMUP), a pure function of the step.

See docs/training.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import OptimConfig


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters split into a decayed group and a non-decayed one (1-D and biases)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        param_groups(model, config.weight_decay), lr=config.lr, betas=tuple(config.betas), eps=config.eps
    )


@dataclass(frozen=True)
class WarmupCosine:
    """lr of optimiser step `step` (0-based) for a run of `total_steps` steps."""

    lr: float
    warmup_start_lr: float
    end_lr: float
    warmup_steps: float
    total_steps: int

    @classmethod
    def from_config(cls, config: OptimConfig, steps_per_epoch: int, epochs: int) -> "WarmupCosine":
        return cls(config.lr, config.warmup_start_lr, config.end_lr, config.warmup_epochs * steps_per_epoch,
                   steps_per_epoch * epochs)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_lr + (self.lr - self.warmup_start_lr) * step / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return self.end_lr + (self.lr - self.end_lr) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
