"""Scoring a student on a list of videos: 3 temporal views x 1 centre crop, view logits summed.

`encode_videos` gives each video the sum of its views' features (logits are linear in it, so
scoring the sum is summing the view logits), `score_videos` scores features against class
embeddings, so a protocol encodes each video once. Results do not depend on batch, worker or
process count: nothing is padded or duplicated, and shards (`shard=(rank, world)`) are merged by
list index (`merge_encoded`). Accuracies count the videos that could be scored; the others are named.

See docs/evaluation.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch

from ..data import VideoDataset, VideoItem, make_loader
from ..model.student import VideoStudent
from ..progress import ProgressBar
from ..prompts import ClassText
from .metrics import percent, topk_hits


@dataclass
class EncodedVideos:
    """Video features of (a shard of) a list: the sum over views of each video's feature."""

    features: torch.Tensor  # (N, D) float32, zeros where not ok
    ok: torch.Tensor  # (N,) bool: decoded and encoded
    indices: torch.Tensor  # (N,) long: position of each row in the list
    failed: dict[str, str] = field(default_factory=dict)  # path -> "path: reason"

    def rows(self, positions: Sequence[int]) -> "EncodedVideos":
        """The rows of the given list positions, in that order (each must be present)."""
        where = {p: r for r, p in enumerate(self.indices.tolist())}
        pick = torch.tensor([where[p] for p in positions], dtype=torch.long)
        return EncodedVideos(self.features[pick], self.ok[pick], torch.as_tensor(list(positions), dtype=torch.long),
                             self.failed)


def merge_encoded(parts: Sequence[EncodedVideos]) -> EncodedVideos:
    """Shards from several processes as one, ordered by list position, each video once."""
    indices = torch.cat([p.indices for p in parts])
    order = torch.argsort(indices, stable=True)
    indices = indices[order]
    first = torch.ones_like(indices, dtype=torch.bool)
    first[1:] = indices[1:] != indices[:-1]
    pick = order[first]
    failed = {k: v for p in parts for k, v in p.failed.items()}
    return EncodedVideos(torch.cat([p.features for p in parts])[pick], torch.cat([p.ok for p in parts])[pick],
                         indices[first], failed)


def student_image_size(student: VideoStudent) -> int:
    return int(student.model_cfg["vision_cfg"]["image_size"])


@torch.no_grad()
def encode_videos(
    student: VideoStudent,
    items: Sequence[VideoItem],
    *,
    views: int = 3,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
    description: str = "encoding videos",
    shard: tuple[int, int] | None = None,
) -> EncodedVideos:
    """Decode, crop and encode every video (or every world-th from rank with `shard=(rank, world)`).

    The frames and their crops are the student's own (`student.config.sampling`, `.spatial`): those it
    was trained on.
    """
    positions = list(range(len(items)))
    if shard is not None:
        rank, world = shard
        positions = positions[rank::world]
    sub = [items[p] for p in positions]
    dim = student.embed_dim
    features = torch.zeros(len(sub), dim)
    ok = torch.zeros(len(sub), dtype=torch.bool)
    failed: dict[str, str] = {}
    if not sub:
        return EncodedVideos(features, ok, torch.tensor(positions, dtype=torch.long), failed)
    dataset = VideoDataset(sub, num_frames=student.config.num_frames, image_size=student_image_size(student),
                           train=False, views=views, sampling=student.config.sampling_spec(),
                           spatial=student.config.spatial_spec())
    device = torch.device(device)
    loader = make_loader(dataset, batch_size, num_workers=num_workers, pin_memory=device.type == "cuda")
    was_training = student.training
    student.eval()
    try:
        with ProgressBar(progress, description, len(sub)) as bar:
            for batch in loader:
                good = batch["ok"]
                if good.any():
                    x = batch["frames"][good].to(device, non_blocking=True)  # (b, V, T, 3, S, S)
                    b, v = x.shape[:2]
                    video = student.encode_video(x.flatten(0, 1)).video  # (b*V, D)
                    features[batch["index"][good]] = video.reshape(b, v, -1).sum(1).float().cpu()  # (b, D)
                ok[batch["index"]] = good
                bad = [path for path, g in zip(batch["path"], good.tolist(), strict=False) if not g]
                failed.update(zip(bad, batch["failed"], strict=False))  # one entry per failed test sample
                bar.advance(len(good))
    finally:
        student.train(was_training)
    return EncodedVideos(features, ok, torch.tensor(positions, dtype=torch.long), failed)


@dataclass
class ClassAccuracy:
    name: str
    videos: int  # scored videos of this class
    top1: float | None  # %, None when the class has no scored video


@dataclass
class EvalResult:
    """Accuracy of one list against one class set (top-1/top-5 in %, over the scored videos).

    reference_top1 / reference_top5: the reference's figures, over every video of the list: a video
    that could not be decoded counts as wrong (FROSTER's test loop scores every listed video), so
    they equal top1 / top5 when nothing failed and are lower by the failed share otherwise.
    """

    top1: float | None
    top5: float | None
    reference_top1: float | None
    reference_top5: float | None
    mean_class_top1: float | None  # mean of the per-class top-1 over classes with scored videos
    num_videos: int
    num_scored: int
    failed: list[str]  # "path: reason" of every video that could not be scored
    per_class: list[ClassAccuracy]
    videos: list[dict[str, Any]]  # path, label, ok, top5 predicted class indices

    @property
    def num_failed(self) -> int:
        return self.num_videos - self.num_scored

    def to_dict(self, videos: bool = True) -> dict[str, Any]:
        d = asdict(self)
        d["num_failed"] = self.num_failed
        if not videos:
            d.pop("videos")
        return d


def score_videos(encoded: EncodedVideos, items: Sequence[VideoItem], class_embeddings: torch.Tensor,
                 logit_scale: torch.Tensor, class_names: Sequence[str]) -> EvalResult:
    """Top-1/top-5 and per-class accuracy of encoded videos (rows in `items` order) against classes."""
    labels = torch.tensor([it.label for it in items], dtype=torch.long)
    classes = class_embeddings.detach().float().cpu()
    logits = logit_scale.detach().float().cpu().exp() * encoded.features @ classes.t()  # (N, C)
    ok = encoded.ok
    top5 = logits.topk(min(5, classes.shape[0]), dim=1).indices  # (N, k)
    hit1 = topk_hits(logits, labels, 1)
    hit5 = topk_hits(logits, labels, 5)
    per_class = []
    for c, name in enumerate(class_names):
        mask = ok & (labels == c)
        per_class.append(ClassAccuracy(name, int(mask.sum()), percent(hit1[mask])))
    present = [pc.top1 for pc in per_class if pc.top1 is not None]
    failed = [encoded.failed.get(str(it.path), f"{it.path}: not encoded") for it, good in zip(items, ok.tolist(), strict=False) if not good]
    videos = [{"path": str(it.path), "label": it.label, "ok": bool(good), "top5": row if good else []}
              for it, good, row in zip(items, ok.tolist(), top5.tolist(), strict=False)]
    return EvalResult(
        top1=percent(hit1[ok]),
        top5=percent(hit5[ok]),
        reference_top1=percent(hit1 & ok),
        reference_top5=percent(hit5 & ok),
        mean_class_top1=sum(present) / len(present) if present else None,
        num_videos=len(items),
        num_scored=int(ok.sum()),
        failed=failed,
        per_class=per_class,
        videos=videos,
    )


@torch.no_grad()
def class_embeddings(student: VideoStudent, classes: Sequence[ClassText], device: str | torch.device = "cpu") -> torch.Tensor:
    """The 29-prompt class embeddings on `device`, computed in eval mode. -> (C, D)"""
    was_training = student.training
    student.eval().to(device)
    try:
        return student.class_embeddings(list(classes))
    finally:
        student.train(was_training)


def evaluate(
    student: VideoStudent,
    items: Sequence[VideoItem],
    class_texts: Sequence[ClassText],
    *,
    views: int = 3,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> EvalResult:
    """Top-1/top-5, per-class accuracy and failed videos of `student` on `items` (labels index `class_texts`).

    Moves the student to `device`; restores its train/eval mode. Training calls this for validation.
    """
    student.to(device)
    encoded = encode_videos(student, items, views=views, batch_size=batch_size, num_workers=num_workers,
                            device=device, progress=progress)
    emb = class_embeddings(student, class_texts, device)
    return score_videos(encoded, items, emb, student.logit_scale, [c.name for c in class_texts])
