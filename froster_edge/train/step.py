"""One optimisation step on tensors: the part of training that is pure arithmetic.

This process's share of the global batch arrives as micro-batches, each forwarded under autocast
with its loss divided by their number; DDP all-reduces after the last. With equal micro-batches that
is the gradient of the mean loss over the global batch, whatever the split. All micro-batches of a
step use the same prompts (one template from seed and step, plus the bare text).

See docs/training.md.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError, MissingCapability
from ..prompts import TEMPLATES, ClassText, encode_per_class, prompts_for

TERMS = ("total", "ce", "vision", "text")


def autocast_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of `train.amp` on `device` (None: full fp32)."""
    if mode == "off":
        return None
    if device.type != "cuda":
        if mode == "fp16":
            raise ConfigError("train.amp fp16 needs a CUDA GPU; use bf16 or off on the CPU")
        return torch.bfloat16 if mode == "bf16" else None
    if mode == "bf16" and not torch.cuda.is_bf16_supported():
        raise MissingCapability(f"train.amp is bf16 but {torch.cuda.get_device_name(device)} does not support bf16; use fp16")
    if mode == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if mode == "bf16" else torch.float16


def class_prompt_tokens(tokenize, classes: Sequence[ClassText]) -> torch.Tensor:
    """Token ids of every prompt of every class: (C, 29, L), the bare class text last."""
    return encode_per_class([prompts_for(c) for c in classes], tokenize)


def template_index(seed: int, step: int) -> int:
    """The training template of step `step`: random, but the same in every process and on resume."""
    return int(np.random.default_rng([seed, step]).integers(len(TEMPLATES)))


def step_prompts(all_tokens: torch.Tensor, seed: int, step: int) -> torch.Tensor:
    """One template plus the bare prompt per class. (C, 29, L) -> (C, 2, L)"""
    return all_tokens[:, [template_index(seed, step), all_tokens.shape[1] - 1]]


@dataclass
class StepOutput:
    terms: torch.Tensor  # (4,) mean total, ce, vision, text over this process's micro-batches (detached)
    grad_norm: torch.Tensor  # () gradient norm before clipping


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    prompt_tokens: torch.Tensor,
    params: Sequence[torch.Tensor],
    *,
    amp_dtype: torch.dtype | None = None,
    scaler: torch.amp.GradScaler | None = None,
    clip_grad_norm: float | None = 1.0,
) -> StepOutput:
    """Forward/backward each (frames (B, T, 3, H, W), labels (B,)) micro-batch, then clip and step.

    `model` is the FrosterDistiller or its DistributedDataParallel wrapper; `params` its trainable
    parameters (for clipping). The optimizer's lr must already be set for this step.
    """
    n = len(micro_batches)
    device = prompt_tokens.device
    sums = torch.zeros(len(TERMS), device=device)
    for i, (frames, labels) in enumerate(micro_batches):
        last = i == n - 1
        sync = model.no_sync() if isinstance(model, DistributedDataParallel) and not last else contextlib.nullcontext()
        with sync:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                terms = model(frames, labels, prompt_tokens)
            loss = terms.total / n
            (scaler.scale(loss) if scaler is not None else loss).backward()
        sums += torch.stack([terms.total, terms.ce, terms.vision, terms.text]).detach().float()
    if scaler is not None:
        scaler.unscale_(optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip_grad_norm if clip_grad_norm is not None else math.inf)
    if scaler is not None:
        scaler.step(optimizer)  # skips the step when the fp16 gradients overflowed
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return StepOutput(terms=sums / n, grad_norm=grad_norm.detach())
