"""Reading a video file into frames, and the CLIP test-time view of a clip (no torch).

Decoding is sequential (seeking is wrong on raw MPEG-4 streams) and the frame count is what was
decoded, never the container's. OpenCV reads first; PyAV reads what OpenCV cannot open, has no
frame count for, or stops on early, and names the corruption. `decode_video(path, select)` keeps
only the frames `select(count, fps)` picks from the true count (re-choosing if decoding finds
another). Rotation metadata is applied. A file that yields no frame is a `VideoError`.

See docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import FrosterError
from .opencv import cv2
from .spatial import REFERENCE, SpatialSpec

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)

MAX_FRAMES = 200_000  # more than this is not a clip: stop instead of filling memory
_MAX_FPS = 1000.0

# select(decoded frame count, fps or 0.0 when unknown) -> the frame indices wanted, in order
FrameSelect = Callable[[int, float], np.ndarray]


class VideoError(FrosterError):
    """A video that cannot be decoded (missing, empty, corrupt or an unsupported codec).

    `path` and `reason` are kept apart so that data loaders can report "path: reason" lists.
    """

    def __init__(self, reason: str, path: str | Path | None = None):
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{path}: {reason}" if path is not None else reason)


@dataclass(frozen=True)
class VideoInfo:
    """What decoding found: the real frame count, the container's average fps (0.0 if unknown).

    A file that decodes cleanly but to fewer frames than its header declares (a truncated
    download, leading packets discarded) is used with the frames it has; `declared_frames`
    keeps the header's count (0 when it has none) for whoever wants to flag it.
    """

    num_frames: int
    fps: float
    backend: str  # "opencv" or "pyav"
    declared_frames: int = 0


def read_frames(path: str | Path) -> np.ndarray:
    """All frames of `path` as uint8 RGB, (N, H, W, 3), in display orientation."""
    return decode_video(path)[0]


def decode_video(path: str | Path, select: FrameSelect | None = None) -> tuple[np.ndarray, VideoInfo]:
    """The frames `select(count, fps)` of `path` (all when None): uint8 RGB (K, H, W, 3), and VideoInfo."""
    path = Path(path)
    if not path.is_file():
        raise VideoError("video not found", path)
    if path.stat().st_size == 0:
        raise VideoError("empty file", path)
    cap = _open_opencv(path)
    if cap is None:
        return _decode_pyav(path, select)
    try:
        hint, fps = _opencv_meta(cap)
        if not hint and _pyav() is not None:
            # No usable frame count in the container (raw streams): PyAV counts while decoding.
            cap.release()
            return _decode_pyav(path, select)
        want = None if select is None or not hint else set(_indices(select, hint, fps).tolist())
        kept, count = _opencv_frames(cap, want, path)
    finally:
        cap.release()
    if count == 0 or stopped_early(count, hint):
        # OpenCV decoded nothing, or stopped early without an error (it does so on corrupt
        # data): PyAV either decodes more or raises the reason.
        if _pyav() is None:
            raise VideoError(f"decoding stopped after {count} of {hint} frames and PyAV is not installed to say why"
                             if count else "OpenCV decodes no frame and PyAV is not installed (pip install av)", path)
        frames, info = _decode_pyav(path, select, hint)
        if info.num_frames >= count:
            return frames, info
    idx = _indices(select, count, fps)
    if not set(idx.tolist()) <= kept.keys():
        # The container's count was wrong, so other frames are wanted: decode once more.
        again = _open_opencv(path)
        if again is None:
            raise VideoError("OpenCV could not reopen the file", path)
        try:
            kept, recount = _opencv_frames(again, set(idx.tolist()), path)
        finally:
            again.release()
        if recount != count:
            raise VideoError(f"decodes to {count} frames, then {recount}: unreadable", path)
    return np.stack([kept[i] for i in idx]), VideoInfo(count, fps, "opencv", hint)


def _indices(select: FrameSelect | None, count: int, fps: float) -> np.ndarray:
    if select is None:
        return np.arange(count)
    idx = np.asarray(select(count, fps), dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= count):
        raise ValueError(f"frame selection {idx.tolist()} is outside 0..{count - 1}")
    return idx


def _open_opencv(path: Path) -> cv2.VideoCapture | None:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not cap.isOpened():
        cap.release()
        return None
    return cap


def _opencv_meta(cap: cv2.VideoCapture) -> tuple[int, float]:
    """The container's frame count (0 when absent or absurd: raw streams report ~-1.9e14) and fps."""
    count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    fps = cap.get(cv2.CAP_PROP_FPS)
    count = int(count) if 0 < count < MAX_FRAMES else 0
    fps = float(fps) if 0 < fps < _MAX_FPS else 0.0
    return count, fps


def _opencv_frames(cap: cv2.VideoCapture, want: set[int] | None, path: Path) -> tuple[dict[int, np.ndarray], int]:
    """Decode every frame in order (grab), converting only the wanted ones (retrieve). -> kept, count"""
    kept: dict[int, np.ndarray] = {}
    count = 0
    try:
        while cap.grab():
            if want is None or count in want:
                ok, frame = cap.retrieve()
                if not ok:
                    break
                kept[count] = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            count += 1
            if count > MAX_FRAMES:
                raise VideoError(f"more than {MAX_FRAMES} frames: not a clip", path)
    except cv2.error as e:
        raise VideoError(f"OpenCV failed after {count} frames ({e.msg or e})", path) from e
    return kept, count


def stopped_early(count: int, declared: int) -> bool:
    """OpenCV stopped before the container's frame count (one frame of slack for rounding)."""
    return bool(declared) and count < declared - 1


def check_early_stop(path: str | Path, count: int, declared: int) -> None:
    """The rule `decode_video` applies, for a reader that streams a file through OpenCV (`run`):
    when OpenCV stops early, PyAV decodes the file; a clean decode to no more frames than OpenCV
    read means the header's count was wrong (leading packets discarded) and the frames read are
    the video; corrupt data, or frames OpenCV could not reach, is a VideoError saying so."""
    if not stopped_early(count, declared):
        return
    path = Path(path)
    av = _pyav()
    if av is None:
        raise VideoError(f"decoding stopped after {count} of {declared} frames (corrupt or truncated; PyAV, "
                         "not installed, would tell a wrong frame count from corruption: pip install av)", path)
    _, decodable, _, _ = _pyav_pass(av, path, set(), declared)  # raises, naming the corruption
    if decodable > count + 1:
        raise VideoError(f"OpenCV stopped after {count} of the {decodable} frames PyAV decodes", path)


def _pyav():
    try:
        import av
    except ImportError:
        return None
    return av


def _decode_pyav(path: Path, select: FrameSelect | None, declared: int = 0) -> tuple[np.ndarray, VideoInfo]:
    """Decode all frames, then convert the selected ones to RGB.

    Decoded frames are held unconverted (1.5 bytes a pixel) up to PYAV_HOLD_BYTES; a longer video
    is decoded a second time, keeping only the selected frames. `declared`: the frame count
    OpenCV read from the container, for when PyAV's stream has none.
    """
    av = _pyav()
    if av is None:
        raise VideoError("OpenCV cannot read this file and PyAV is not installed (pip install av)", path)
    held, count, fps, declared = _pyav_pass(av, path, None, declared)
    idx = _indices(select, count, fps)
    wanted = set(idx.tolist())
    if held is None:
        held, recount, _, _ = _pyav_pass(av, path, wanted, declared)
        if recount != count:
            raise VideoError(f"decodes to {count} frames, then {recount}: unreadable", path)
    try:
        rgb = {i: _pyav_rgb(held[i]) for i in wanted}
    except (av.error.FFmpegError, ValueError) as e:
        raise VideoError(f"frames cannot be converted to RGB ({e})", path) from e
    return np.stack([rgb[i] for i in idx]), VideoInfo(count, fps, "pyav", declared)


PYAV_HOLD_BYTES = 1 << 29  # 512 MiB of decoded frames: ~390 frames of 720p at 1.5 bytes a pixel


def _pyav_pass(av, path: Path, want: set[int] | None, declared: int) -> tuple[dict | None, int, float, int]:
    """One decode of the first video stream: the wanted frames (all while they fit in
    PYAV_HOLD_BYTES when `want` is None, else None), the count, fps and declared count."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, ValueError) as e:
        raise VideoError(f"cannot be opened as a video ({getattr(e, 'strerror', None) or e})", path) from e
    with container:
        if not container.streams.video:
            raise VideoError("has no video stream", path)
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate and 0 < float(rate) < _MAX_FPS else 0.0
        declared = stream.frames if 0 < stream.frames < MAX_FRAMES else declared
        held: dict | None = {}
        count = size = 0
        try:
            for frame in container.decode(stream):
                if held is not None and (want is None or count in want):
                    held[count] = frame
                    size += frame.width * frame.height * 3 // 2
                    if want is None and size > PYAV_HOLD_BYTES:
                        held = None  # too long to hold: count now, convert on a second pass
                count += 1
                if count > MAX_FRAMES:
                    raise VideoError(f"more than {MAX_FRAMES} frames: not a clip", path)
        except av.error.FFmpegError as e:
            raise VideoError(f"corrupt video, decoding stopped after {count} frames ({e})", path) from e
    if not count:
        raise VideoError("no frame could be decoded (empty, corrupt, or an unsupported codec)", path)
    return held, count, fps, declared


def _pyav_rgb(frame) -> np.ndarray:
    """RGB pixels as displayed: PyAV leaves rotation metadata (-90/90/180, FFmpeg's sign) to us."""
    # one thread: PyAV keeps a swscale context per thread, and a threaded one would be copied into
    # a forked child (a DataLoader worker) without its slice threads, hanging its next conversion
    img = frame.to_ndarray(format="rgb24", threads=1)
    rotation = int(getattr(frame, "rotation", 0) or 0)
    if rotation % 360:
        img = np.ascontiguousarray(np.rot90(img, k=rotation // 90))
    return img


def stream_timing(path: str | Path) -> float:
    """The video stream's pts per frame (duration / frames) when the container reports a stream
    duration (PyAV's `stream.duration`), else 0.0.

    FROSTER's decoder places clips differently with and without one (froster_edge.sampling):
    mp4/avi/mov report it, Matroska/WebM and raw streams do not. Reads the header only; without
    PyAV, the file's extension decides (1.0: frames counted whole).
    """
    av = _pyav()
    if av is not None:
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    return 0.0
                stream = container.streams.video[0]
                if stream.duration is None:
                    return 0.0
                return stream.duration / stream.frames if stream.frames > 0 else 1.0
        except (av.error.FFmpegError, ValueError, OSError):
            pass  # decoding names the problem
    return 0.0 if Path(path).suffix.lower() in _UNTIMED_SUFFIXES else 1.0


_UNTIMED_SUFFIXES = (".webm", ".mkv", ".h264", ".264", ".hevc", ".h265", ".mpg", ".mpeg", ".ts")


def uniform_indices(num_frames: int, count: int) -> np.ndarray:
    """`count` indices spread evenly over `num_frames` (segment centres); repeats when short."""
    if num_frames < 1:
        raise VideoError("cannot sample from a video with no frames")
    edges = np.linspace(0, num_frames, count + 1)
    return np.minimum(((edges[:-1] + edges[1:]) / 2).astype(np.int64), num_frames - 1)


def resize_center_crop(frame: np.ndarray, size: int, spec: SpatialSpec = REFERENCE) -> np.ndarray:
    """Short side to `size`, then the centre `size` x `size` crop, by `spec` (froster_edge.spatial). uint8 RGB."""
    return spec.center_crop(frame, size)


def normalize_clip(frames: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., S, S, 3) -> CLIP-normalised float32 (..., 3, S, S)."""
    x = (frames.astype(np.float32) / 255.0 - CLIP_MEAN) / CLIP_STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def clip_view(frames: np.ndarray, num_frames: int, size: int) -> np.ndarray:
    """The single evenly spread test view of a decoded video, CLIP-normalised: (T, 3, S, S) float32."""
    picked = [resize_center_crop(frames[i], size) for i in uniform_indices(len(frames), num_frames)]
    return normalize_clip(np.stack(picked))
