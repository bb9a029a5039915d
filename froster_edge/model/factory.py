"""The small factory: configs in, student / teacher / distiller out."""

from __future__ import annotations

import copy

from ..config import DistillConfig, StudentConfig
from .clip import create_clip
from .distill import FrosterDistiller
from .student import VideoStudent
from .teacher import FrozenTeacher


def create_student(config: StudentConfig) -> VideoStudent:
    """A student from an open_clip name or config file and its pretrained weights (fp32, CPU)."""
    clip, model_cfg = create_clip(config.model_name, config.pretrained, config.image_size)
    return VideoStudent(clip, config, model_cfg)


def create_distiller(student: StudentConfig, distill: DistillConfig | None = None) -> FrosterDistiller:
    """Student, teacher and projectors; the teacher is a frozen copy of the same original CLIP."""
    clip, model_cfg = create_clip(student.model_name, student.pretrained, student.image_size)
    teacher = FrozenTeacher(copy.deepcopy(clip))
    return FrosterDistiller(VideoStudent(clip, student, model_cfg), teacher, distill)
