"""Reading a video file into frames, and the CLIP test-time view of a clip (no torch).

Decoding is sequential (seeking is wrong on raw MPEG-4 streams) and the frame count comes from
what was decoded, never from the container. OpenCV reads first; PyAV is tried when OpenCV
decodes nothing. A file that yields no frame, or fewer than its container promises because a
decoder stopped on corrupt data, is a `VideoError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

# FFmpeg inside OpenCV prints its own complaints about bad files; the project reports them itself.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from .errors import FrosterError

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


class VideoError(FrosterError):
    """A video that cannot be decoded (missing, empty, corrupt or an unsupported codec)."""


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of `path` as uint8 RGB, (N, H, W, 3)."""
    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video not found: {path}")
    if path.stat().st_size == 0:
        raise VideoError(f"{path} is an empty file")
    frames, expected = _read_opencv(path)
    if not frames:
        frames = _read_pyav(path)
    elif expected > 0 and len(frames) < expected - 1:
        # OpenCV stops silently on corrupt data; PyAV tells us why.
        pyav = _read_pyav(path)
        frames = pyav if len(pyav) > len(frames) else frames
    if not frames:
        raise VideoError(f"{path}: no frame could be decoded (empty, corrupt, or an unsupported codec)")
    return np.stack(frames)


def _read_opencv(path: Path) -> tuple[list[np.ndarray], int]:
    cap = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    try:
        if not cap.isOpened():
            return frames, 0
        expected = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        expected = expected if 0 < expected < 10_000_000 else 0  # raw streams report garbage
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return frames, expected


def _read_pyav(path: Path) -> list[np.ndarray]:
    try:
        import av
    except ImportError:
        return []
    frames: list[np.ndarray] = []
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise VideoError(f"{path} cannot be opened as a video ({e.strerror or type(e).__name__})") from e
    try:
        with container:
            if not container.streams.video:
                return []
            for frame in container.decode(video=0):
                img = frame.to_ndarray(format="rgb24")
                rotation = getattr(frame, "rotation", 0) or 0
                if rotation:
                    img = np.ascontiguousarray(np.rot90(img, k=int(rotation) // 90))
                frames.append(img)
    except av.error.FFmpegError as e:
        raise VideoError(f"{path}: corrupt video, decoding stopped after {len(frames)} frames ({e})") from e
    return frames


def uniform_indices(num_frames: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over `num_frames` (segment centres); repeats when short."""
    if num_frames < 1:
        raise VideoError("cannot sample from a video with no frames")
    edges = np.linspace(0, num_frames, count + 1)
    return np.minimum(((edges[:-1] + edges[1:]) / 2).astype(np.int64), num_frames - 1)


def resize_center_crop(frame: np.ndarray, size: int) -> np.ndarray:
    """Short side to `size` (bicubic, as CLIP), then the centre `size` x `size` crop. uint8 RGB."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    resized = cv2.resize(frame, (nw, nh), interpolation=cv2.INTER_CUBIC)
    top, left = (nh - size) // 2, (nw - size) // 2
    return resized[top : top + size, left : left + size]


def clip_view(frames: np.ndarray, num_frames: int, size: int) -> np.ndarray:
    """The single evenly spread test view of a decoded video, CLIP-normalised: (T, 3, S, S) float32."""
    picked = [resize_center_crop(frames[i], size) for i in uniform_indices(len(frames), num_frames)]
    x = (np.stack(picked).astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD  # (T, S, S, 3)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
