"""The frozen teacher: the original CLIP, per-frame, never trained.

It stays in eval mode even when the surrounding model is put in train mode, takes no gradient, and
on a GPU runs under autocast in bf16 (fp16 where bf16 is unsupported); outputs are returned in fp32.

See docs/method.md.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import nn

from .clip import encode_text


class FrozenTeacher(nn.Module):
    def __init__(self, clip: CLIP):
        super().__init__()
        self.clip = clip
        self.clip.requires_grad_(False)
        self.clip.eval()

    def train(self, mode: bool = True) -> "FrozenTeacher":
        """Ignore `mode`: the teacher is always in eval."""
        return super().train(False)

    def _precision(self, device: torch.device):
        if device.type != "cuda":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised per-frame features. (B, T, 3, H, W) -> (B, T, D) fp32"""
        B, T = frames.shape[:2]
        with self._precision(frames.device):
            feats = self.clip.encode_image(frames.flatten(0, 1))
        return F.normalize(feats.float(), dim=-1).reshape(B, T, -1)

    @torch.no_grad()
    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Normalised text features. (N, 77) -> (N, D) fp32"""
        with self._precision(tokens.device):
            feats = encode_text(self.clip, tokens, normalize=False)
        return F.normalize(feats.float(), dim=-1)
