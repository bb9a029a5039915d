"""Video data for training and evaluation: lists, class files, sampling, the Dataset and loader.

Decoding itself is `froster_edge.video` (torch-free, shared with export and the runtime).
"""

from __future__ import annotations

from ..video import VideoError, VideoInfo, decode_video, read_frames
from .dataset import VideoDataset, collate_clips, init_worker, make_loader, worker_context
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
