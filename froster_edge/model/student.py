"""The FROSTER student: an open_clip CLIP whose image tower sees neighbouring frames.

`encode_video` returns the L2-normalised per-frame features and their mean, the video feature
FROSTER classifies with (the mean is NOT re-normalised, as in the reference). With
`temporal_attention="none"` the student is plain per-frame CLIP.

See docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from open_clip.model import CLIP
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..config import StudentConfig
from ..prompts import ClassText, encode_per_class, prompts_for
from .attention import make_temporal
from .clip import encode_text, tokenize


@dataclass
class VideoFeatures:
    frames: torch.Tensor  # (B, T, D) normalised per-frame features
    video: torch.Tensor  # (B, D) mean of the normalised frame features


class VideoStudent(nn.Module):
    """CLIP with neighbour-frame attention in every visual block (no new parameters).

    The state dict is CLIP's own under `clip.`, so `clip.state_dict()` is an open_clip checkpoint.
    """

    def __init__(self, clip: CLIP, config: StudentConfig, model_cfg: dict[str, Any]):
        super().__init__()
        self.config = config
        self.model_cfg = model_cfg
        self.clip = clip
        if config.temporal_attention == "neighbors":
            blocks = clip.visual.transformer.resblocks
            for i, block in enumerate(blocks):
                blocks[i] = make_temporal(block)
        self.set_grad_checkpointing(config.grad_checkpointing)

    @property
    def embed_dim(self) -> int:
        return self.model_cfg["embed_dim"]

    @property
    def logit_scale(self) -> torch.Tensor:
        return self.clip.logit_scale

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Normalised per-frame features. (B, T, 3, H, W) float -> (B, T, D)"""
        B, T = frames.shape[:2]
        x = frames.flatten(0, 1)  # (B*T, 3, H, W)
        if self.config.temporal_attention == "none":
            feats = self.clip.encode_image(x)
        else:
            feats = self._encode_temporal(x, T)
        return F.normalize(feats, dim=-1).reshape(B, T, -1)

    def _encode_temporal(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        visual = self.clip.visual
        x = visual._embeds(x)  # (B*T, L, W): patches, class token, positions, ln_pre
        for block in visual.transformer.resblocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, num_frames, use_reentrant=False)
            else:
                x = block(x, num_frames)
        pooled, _ = visual._pool(x)  # (B*T, W): class token after ln_post
        return pooled @ visual.proj  # (B*T, D)

    def encode_video(self, frames: torch.Tensor) -> VideoFeatures:
        """Per-frame features and the video feature. (B, T, 3, H, W) -> (B, T, D), (B, D)"""
        f = self.encode_frames(frames)
        return VideoFeatures(frames=f, video=f.mean(dim=1))

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text features from token ids. (N, 77) -> (N, D)"""
        return encode_text(self.clip, tokens, normalize=normalize)

    def tokenize(self, prompts: list[str]) -> torch.Tensor:
        return tokenize(prompts, self.model_cfg)

    def class_embeddings(self, classes: list[ClassText], batch_size: int = 256) -> torch.Tensor:
        """Prompt-ensembled class embeddings (all 29 prompts). -> (C, D), normalised"""
        def encode(flat: list[str]) -> torch.Tensor:
            tokens = self.tokenize(flat).to(self.logit_scale.device)
            return torch.cat([self.encode_text(t) for t in tokens.split(batch_size)])

        return average_prompts(encode_per_class([prompts_for(c) for c in classes], encode))

    def forward(self, frames: torch.Tensor) -> VideoFeatures:
        return self.encode_video(frames)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in backward: less memory for more compute."""
        self.grad_checkpointing = enable
        self.clip.transformer.grad_checkpointing = enable  # text tower
        self.clip.visual.transformer.grad_checkpointing = enable  # image tower with `none`


def average_prompts(feats: torch.Tensor) -> torch.Tensor:
    """Mean of normalised prompt embeddings per class, re-normalised. (C, P, D) -> (C, D)"""
    return F.normalize(F.normalize(feats, dim=-1).mean(dim=1), dim=-1)


def video_logits(video: torch.Tensor, classes: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """exp(logit_scale) x video . classes^T. (B, D), (C, D) -> (B, C)"""
    return logit_scale.exp() * video @ classes.t()
