"""The torch Dataset of video clips, its collate function and DataLoader.

Every random choice of sample i in epoch e comes from `numpy.random.default_rng([seed, epoch, i])`,
so any worker or process count and a resumed run see the same clips; the epoch lives in shared
memory so `set_epoch` reaches persistent workers. Bad videos never stop a run: in training the
sample is replaced by the next video (named in "failed"); at test time it comes back with zero
frames and "ok": False, so evaluation can count what it could not score.

See docs/training.md.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import select
import threading
import time
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..sampling import SamplingConfig, SamplingSpec
from ..spatial import REFERENCE, SpatialSpec
from ..video import VideoError, decode_video, normalize_clip, stream_timing
from .lists import VideoItem
from .transforms import train_transform

MAX_REPLACEMENTS = 50  # bad videos in a row before training gives up on the list


class VideoDataset(Dataset):
    """Clips of the videos in `items`, CLIP-normalised: one random clip (train) or `views` clips (test).

    Frames are picked by `sampling` (default: the reference rule for `num_frames`) and resized and
    cropped by `spatial` (default: the reference transforms).

    A sample is a dict: "frames" float32 (V, T, 3, S, S) with V = 1 in training, "label" int,
    "index" (the item actually used), "path" str, "ok" bool, "failed" list of "path: reason".
    """

    def __init__(
        self,
        items: Sequence[VideoItem],
        *,
        num_frames: int,
        image_size: int = 224,
        train: bool,
        views: int = 3,
        sampling: SamplingSpec | None = None,
        spatial: SpatialSpec = REFERENCE,
        seed: int = 0,
    ):
        if not items:
            raise ValueError("VideoDataset needs at least one video")
        self.items = list(items)
        self.num_frames = num_frames
        self.image_size = image_size
        self.train = train
        self.views = 1 if train else views
        self.sampling = sampling or SamplingConfig().spec(num_frames)
        if self.sampling.num_frames != num_frames:
            raise ValueError(f"the sampling spec is for {self.sampling.num_frames} frames, not {num_frames}")
        self.spatial = spatial
        self.seed = seed
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.items)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose random clips the next samples draw (seen by running workers too)."""
        self._epoch.fill_(epoch)

    def __getitem__(self, i: int) -> dict[str, Any]:
        if not self.train:
            return self._test_sample(i)
        failed: list[str] = []
        n = len(self.items)
        for attempt in range(min(n, MAX_REPLACEMENTS)):
            j = (i + attempt) % n
            rng = np.random.default_rng([self.seed, self.epoch, i] + ([attempt] if attempt else []))
            try:
                frames = self._train_clip(self.items[j], rng)
            except VideoError as e:
                failed.append(_failure(self.items[j], e))
                continue
            return _sample(frames, self.items[j], j, True, failed)
        raise VideoError(f"{len(failed)} videos in a row from index {i} could not be decoded; the last: {failed[-1]}")

    def _train_clip(self, item: VideoItem, rng: np.random.Generator) -> np.ndarray:
        # The temporal draw gets its own generator (re-made if the decoder asks twice, with the true
        # frame count), so the spatial draws that follow do not depend on how decoding went.
        temporal_seed = int(rng.integers(2**63))

        timed = self.sampling.uses_timing and stream_timing(item.path)

        def select(count: int, fps: float) -> np.ndarray:
            return self.sampling.train_indices(count, fps, np.random.default_rng(temporal_seed), timed)

        frames, _ = decode_video(item.path, select)  # (T, H, W, 3)
        clip = train_transform(frames, self.image_size, rng, self.spatial)
        return normalize_clip(clip)[None]  # (1, T, 3, S, S)

    def _test_sample(self, i: int) -> dict[str, Any]:
        item = self.items[i]

        timed = self.sampling.uses_timing and stream_timing(item.path)

        def select(count: int, fps: float) -> np.ndarray:
            return self.sampling.view_indices(count, fps, self.views, timed).reshape(-1)

        try:
            frames, _ = decode_video(item.path, select)  # (V*T, H, W, 3)
        except VideoError as e:
            empty = np.zeros((self.views, self.num_frames, 3, self.image_size, self.image_size), np.float32)
            return _sample(empty, item, i, False, [_failure(item, e)])
        crops = np.stack([self.spatial.center_crop(f, self.image_size) for f in frames])
        clips = normalize_clip(crops).reshape(self.views, self.num_frames, 3, self.image_size, self.image_size)
        return _sample(clips, item, i, True, [])


def _failure(item: VideoItem, error: VideoError) -> str:
    return f"{item.path}: {getattr(error, 'reason', None) or error}"


def _sample(frames: np.ndarray, item: VideoItem, index: int, ok: bool, failed: list[str]) -> dict[str, Any]:
    return {"frames": torch.from_numpy(frames), "label": item.label, "index": index, "path": str(item.path),
            "ok": ok, "failed": failed}


def collate_clips(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples into a batch: "frames" (B, V, T, 3, S, S), "label" / "index" LongTensor (B,),
    "ok" BoolTensor (B,), "path" list, "failed" one flat list. "labels" and "indices" are aliases."""
    label = torch.tensor([s["label"] for s in samples], dtype=torch.long)
    index = torch.tensor([s["index"] for s in samples], dtype=torch.long)
    return {
        "frames": torch.stack([s["frames"] for s in samples]),
        "label": label,
        "labels": label,
        "index": index,
        "indices": index,
        "ok": torch.tensor([s["ok"] for s in samples], dtype=torch.bool),
        "path": [s["path"] for s in samples],
        "failed": [f for s in samples for f in s["failed"]],
    }


def init_worker(_worker_id: int, parent: int | None = None) -> None:
    """One torch thread per worker: the workers are the parallelism (decoders already run one
    thread each). OpenCV's own pool is left alone: cv2.setNumThreads in a forked worker hung about
    4 runs in 10 once the parent had used OpenCV, so this is safe with any start method.

    `parent`: the process that made the loader; the worker ends when it does (see exit_with)."""
    torch.set_num_threads(1)
    if parent is not None:
        exit_with(parent)


def exit_with(pid: int) -> None:
    """End this process as soon as process `pid` has ended, however it ended (kill -9 included).

    Workers started from the forkserver are its children, not the trainer's: torch's own check
    (is my parent still there?) watches the server, and the server stays up while any worker
    holds its inherited "alive" pipe, so after a kill -9 of the trainer both lived on. A daemon
    thread waits on a pidfd of `pid` (where the kernel has none, it checks once a second)."""
    def watch() -> None:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            os._exit(1)  # it is gone already
        except (AttributeError, OSError):  # no pidfd here: look once a second
            while True:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    os._exit(1)
                except PermissionError:
                    pass
                time.sleep(1.0)
        select.select([fd], [], [])  # readable once the process has ended
        os._exit(1)

    threading.Thread(target=watch, name=f"exit-with-{pid}", daemon=True).start()


def worker_context() -> multiprocessing.context.BaseContext:
    """How workers start: from a clean forkserver process (spawn where there is none), not as a
    fork of this process. A fork copies OpenCV's, FFmpeg's and OpenMP's thread pools half alive,
    and a worker can then wait forever on one of their locks (seen: cv2.setNumThreads in a forked
    worker after the parent had decoded videos). The server imports this package once, so each
    worker starts without importing it again. Scripts need the `if __name__ == "__main__":` guard."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["froster_edge.data"])
        return ctx
    return multiprocessing.get_context("spawn")


def make_loader(
    dataset: VideoDataset,
    batch_size: int = 1,
    *,
    num_workers: int = 2,
    shuffle: bool = False,
    sampler: Sampler | None = None,
    batch_sampler: Sampler[list[int]] | None = None,
    drop_last: bool = False,
    pin_memory: bool = False,
    generator: torch.Generator | None = None,
    persistent_workers: bool = False,
    prefetch_factor: int = 2,
) -> DataLoader:
    """A DataLoader of `dataset` with `collate_clips` and single-threaded workers (2 keep 2 cores busy),
    started as `worker_context` says. The one loader builder of evaluation and training.

    `batch_sampler` (training's resumable sampler) yields whole batches: then `batch_size`,
    `shuffle`, `sampler` and `drop_last` are its business and must stay at their defaults.
    """
    workers = num_workers > 0
    return DataLoader(
        dataset,
        batch_size=batch_size if batch_sampler is None else 1,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        batch_sampler=batch_sampler,
        num_workers=num_workers,
        collate_fn=collate_clips,
        worker_init_fn=functools.partial(init_worker, parent=os.getpid()) if workers else None,
        drop_last=drop_last,
        pin_memory=pin_memory,
        generator=generator,
        persistent_workers=persistent_workers and workers,
        prefetch_factor=prefetch_factor if workers else None,
        multiprocessing_context=worker_context() if workers else None,
    )
