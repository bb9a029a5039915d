"""Zero-shot classification of one video file: the quickest look at what a model sees.

One evenly spread view of T frames, the full 29-prompt ensemble per class, softmax over
exp(logit_scale) x video . classes. Dataset-level evaluation (3 views, protocols) is `eval`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .model.student import VideoStudent, video_logits
from .prompts import ClassText
from .video import clip_view, read_frames


@dataclass
class Prediction:
    label: str
    score: float  # softmax probability over the given classes


@torch.no_grad()
def predict_video(student: VideoStudent, video: str | Path, classes: list[ClassText], top_k: int = 5) -> list[Prediction]:
    student.eval()
    size = student.model_cfg["vision_cfg"]["image_size"]
    view = torch.from_numpy(clip_view(read_frames(video), student.config.num_frames, size))[None]  # (1, T, 3, S, S)
    feats = student.encode_video(view)
    logits = video_logits(feats.video, student.class_embeddings(classes), student.logit_scale)[0]
    probs = logits.softmax(-1)
    top = probs.topk(min(top_k, len(classes)))
    return [Prediction(classes[i].name, float(p)) for p, i in zip(top.values, top.indices)]
