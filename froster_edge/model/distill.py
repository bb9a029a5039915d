"""Residual feature distillation, FROSTER's contribution.

Two residual projectors (vision, text), z' = z + alpha * MLP(z), MLP = Linear-GELU-Linear, bias-free,
last layer zero-initialised so each starts as the identity. Loss:
    CE(logits, y) + w_v * mean(1 - cos(P_v(z_v), teacher_v)) + w_t * mean(1 - cos(P_t(z_t), teacher_t))
with per-frame vision features, prompt-averaged text features, w_v = w_t = 2.0. The projectors
serve the loss only: inference and export use the un-projected student.

See docs/method.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..config import DistillConfig
from .student import VideoStudent, average_prompts, video_logits
from .teacher import FrozenTeacher


class ResidualProjector(nn.Module):
    def __init__(self, dim: int, alpha: float = 0.1):
        super().__init__()
        self.alpha = alpha
        self.fc1 = nn.Linear(dim, dim, bias=False)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(dim, dim, bias=False)
        nn.init.kaiming_normal_(self.fc1.weight)
        nn.init.zeros_(self.fc2.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z + self.alpha * self.fc2(self.act(self.fc1(z)))


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean(1 - cos(a_i, b_i)) over rows. (N, D), (N, D) -> ()"""
    return (1.0 - F.cosine_similarity(a, b, dim=-1)).mean()


@dataclass
class LossTerms:
    total: torch.Tensor
    ce: torch.Tensor
    vision: torch.Tensor  # cosine distance on frame features, before weighting
    text: torch.Tensor  # cosine distance on class-text features, before weighting
    logits: torch.Tensor  # (B, C)


class FrosterDistiller(nn.Module):
    """Student, frozen teacher and the two projectors; `forward` returns the training loss."""

    def __init__(self, student: VideoStudent, teacher: FrozenTeacher, config: DistillConfig | None = None):
        super().__init__()
        self.config = config or DistillConfig()
        self.student = student
        self.teacher = teacher
        dim = student.embed_dim
        self.projector_v = ResidualProjector(dim, self.config.alpha)
        self.projector_t = ResidualProjector(dim, self.config.alpha)

    def forward(self, frames: torch.Tensor, labels: torch.Tensor, prompt_tokens: torch.Tensor) -> LossTerms:
        """frames (B, T, 3, H, W), labels (B,), prompt_tokens (C, P, L): P prompts per class."""
        C, P, L = prompt_tokens.shape
        flat_tokens = prompt_tokens.reshape(C * P, L)
        video = self.student.encode_video(frames)  # (B, T, D), (B, D)
        text = average_prompts(self.student.encode_text(flat_tokens).reshape(C, P, -1))  # (C, D)
        teacher_frames = self.teacher.encode_frames(frames)  # (B, T, D)
        teacher_text = average_prompts(self.teacher.encode_text(flat_tokens).reshape(C, P, -1))  # (C, D)
        logits = video_logits(video.video, text, self.student.logit_scale)  # (B, C)
        return self.loss(logits, labels, video.frames, text, teacher_frames, teacher_text)

    def loss(
        self,
        logits: torch.Tensor,
        labels: torch.Tensor,
        frames: torch.Tensor,
        text: torch.Tensor,
        teacher_frames: torch.Tensor,
        teacher_text: torch.Tensor,
    ) -> LossTerms:
        """The FROSTER loss from features: frames/teacher_frames (B, T, D), text/teacher_text (C, D)."""
        ce = F.cross_entropy(logits.float(), labels)
        vision = cosine_distance(self.projector_v(frames.flatten(0, 1)).float(), teacher_frames.flatten(0, 1).float())
        text_d = cosine_distance(self.projector_t(text).float(), teacher_text.float())
        total = ce + self.config.vision_weight * vision + self.config.text_weight * text_d
        return LossTerms(total=total, ce=ce, vision=vision, text=text_d, logits=logits)
