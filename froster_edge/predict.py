"""Zero-shot classification of one video file: the quickest look at what a model sees.

One view of T frames, the sampling spec's single test view (the first clip where the container
reports a stream duration, the centre clip where it does not, as the reference's decoder places
one view), cropped by the spatial spec; the full prompt ensemble per class, softmax over
exp(logit_scale) x video . classes. Dataset-level evaluation (3 views, protocols) is `eval`.

See docs/cli.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .model.student import VideoStudent, video_logits
from .prompts import ClassText
from .video import decode_video, normalize_clip, stream_timing


@dataclass
class Prediction:
    label: str
    score: float  # softmax probability over the given classes


@torch.no_grad()
def predict_video(student: VideoStudent, video: str | Path, classes: list[ClassText], top_k: int = 5) -> list[Prediction]:
    student.eval()
    size = student.model_cfg["vision_cfg"]["image_size"]
    spec = student.config.sampling_spec()
    timed = spec.uses_timing and stream_timing(video)
    frames, _ = decode_video(video, lambda count, fps: spec.view_indices(count, fps, 1, timed)[0])
    spatial = student.config.spatial_spec()
    crops = normalize_clip(np.stack([spatial.center_crop(f, size) for f in frames]))
    view = torch.from_numpy(crops)[None]  # (1, T, 3, S, S)
    feats = student.encode_video(view)
    logits = video_logits(feats.video, student.class_embeddings(classes), student.logit_scale)[0]
    probs = logits.softmax(-1)
    top = probs.topk(min(top_k, len(classes)))
    return [Prediction(classes[i].name, float(p)) for p, i in zip(top.values, top.indices, strict=False)]
