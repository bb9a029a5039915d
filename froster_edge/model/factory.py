"""The small factory: configs in, student / teacher / distiller out.

See docs/method.md.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

from ..config import DistillConfig, StudentConfig
from .clip import activation_of, create_clip
from .distill import FrosterDistiller
from .student import VideoStudent
from .teacher import FrozenTeacher


def create_student(config: StudentConfig) -> VideoStudent:
    """A student from an open_clip name or config file and its pretrained weights (fp32, CPU)."""
    clip, model_cfg = create_clip(config.model_name, config.pretrained, config.image_size, config.activation)
    return VideoStudent(clip, _settled(config, model_cfg), model_cfg)


def load_model(student: str | Path | None, model: str, pretrained: str | None, frames: int | None = None,
               activation: str = "auto") -> VideoStudent:
    """The student of a directory, or zero-shot open_clip CLIP with neighbour-frame attention.

    `frames`, when given, replaces the student's T (the attention works for any T; an export fixes
    it); without it a student keeps its own and a zero-shot model takes StudentConfig's default.
    `activation` is the zero-shot model's (a student directory records its own).
    """
    if student is not None:
        from .checkpoint import load_student

        net = load_student(student)
        if frames is not None and frames != net.config.num_frames:
            net.config = replace(net.config, num_frames=frames)
        return net
    config = StudentConfig(model_name=model, pretrained=pretrained, activation=activation)  # type: ignore[arg-type]
    return create_student(config if frames is None else replace(config, num_frames=frames))


def create_distiller(student: StudentConfig, distill: DistillConfig | None = None) -> FrosterDistiller:
    """Student, teacher and projectors; the teacher is a frozen copy of the same original CLIP."""
    clip, model_cfg = create_clip(student.model_name, student.pretrained, student.image_size, student.activation)
    teacher = FrozenTeacher(copy.deepcopy(clip))
    return FrosterDistiller(VideoStudent(clip, _settled(student, model_cfg), model_cfg), teacher, distill)


def _settled(config: StudentConfig, model_cfg: dict) -> StudentConfig:
    """The config with the activation that was built, so a saved student records it."""
    return replace(config, activation=activation_of(model_cfg))
