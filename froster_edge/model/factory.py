"""The small factory: configs in, student / teacher / distiller out."""

from __future__ import annotations

import copy
import dataclasses

from ..config import DistillConfig, StudentConfig
from .clip import activation_of, create_clip
from .distill import FrosterDistiller
from .student import VideoStudent
from .teacher import FrozenTeacher


def create_student(config: StudentConfig) -> VideoStudent:
    """A student from an open_clip name or config file and its pretrained weights (fp32, CPU)."""
    clip, model_cfg = create_clip(config.model_name, config.pretrained, config.image_size, config.activation)
    return VideoStudent(clip, _settled(config, model_cfg), model_cfg)


def create_distiller(student: StudentConfig, distill: DistillConfig | None = None) -> FrosterDistiller:
    """Student, teacher and projectors; the teacher is a frozen copy of the same original CLIP."""
    clip, model_cfg = create_clip(student.model_name, student.pretrained, student.image_size, student.activation)
    teacher = FrozenTeacher(copy.deepcopy(clip))
    return FrosterDistiller(VideoStudent(clip, _settled(student, model_cfg), model_cfg), teacher, distill)


def _settled(config: StudentConfig, model_cfg: dict) -> StudentConfig:
    """The config with the activation that was built, so a saved student records it."""
    return dataclasses.replace(config, activation=activation_of(model_cfg))
