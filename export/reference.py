"""The torch student as plain array -> array encoders: the reference side of the parity gates and
the encoder of label tables built from a student (`froster-edge labels --student`).

See docs/export.md.
"""

from __future__ import annotations

import numpy as np
import torch

from ..bundle.sessions import TextEncoder, VideoEncoder
from ..model.student import VideoStudent
from .onnx_graphs import TextEncoderGraph, VideoEncoderGraph


def torch_video_encoder(student: VideoStudent) -> VideoEncoder:
    """uint8 clips through the exported video graph's torch module (the same preprocessing as ONNX)."""
    graph = VideoEncoderGraph(student).eval()
    device = student.logit_scale.device

    def encode(frames: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return graph(torch.from_numpy(frames).to(device)).float().cpu().numpy()

    return encode


def torch_text_encoder(student: VideoStudent, full_length: bool = False) -> TextEncoder:
    """Token ids through the student's text tower, which reads only up to the batch's last end token;
    `full_length`: through the exported graph's torch module instead, every position of the input
    (the parity gate's reference at the full context)."""
    graph = TextEncoderGraph(student).eval() if full_length else None
    device = student.logit_scale.device

    def encode(tokens: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.from_numpy(tokens).to(device)
            return (graph(x) if graph is not None else student.encode_text(x)).float().cpu().numpy()

    return encode
