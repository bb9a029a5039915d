"""Video data for training and evaluation: lists, class files, transforms, the Dataset and loader.

Decoding is `froster_edge.video` (torch-free). The Dataset and loader (torch) are imported on first
use, so calibration can read video lists and sample clips on a machine without torch.

See docs/training.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..video import VideoError, VideoInfo, decode_video, read_frames
from .lists import VideoItem, check_class_names, read_classes, read_video_list
from .transforms import train_transform

__all__ = [
    "VideoDataset",
    "VideoError",
    "VideoInfo",
    "VideoItem",
    "check_class_names",
    "collate_clips",
    "decode_video",
    "init_worker",
    "make_loader",
    "read_classes",
    "read_frames",
    "read_video_list",
    "train_transform",
    "worker_context",
]

_TORCH_NAMES = ("VideoDataset", "collate_clips", "init_worker", "make_loader", "worker_context")

if TYPE_CHECKING:
    from .dataset import VideoDataset, collate_clips, init_worker, make_loader, worker_context  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
