"""The protocol arithmetic, on plain numbers (accuracies in %).

top-k: right when the label is among the k highest logits (k capped at C). Base-to-novel:
HM = 2BN / (B + N), with B and N each averaged over splits before HM is taken, so a reported row is
consistent. Cross-dataset: mean and population standard deviation (ddof = 0) of the per-split
accuracies, which are reported too.

See docs/evaluation.md.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


def topk_hits(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each label is among its row's k highest logits. (N, C), (N,) -> (N,) bool"""
    k = min(k, logits.shape[1])
    return (logits.topk(k, dim=1).indices == labels[:, None]).any(dim=1)


def percent(hits: torch.Tensor) -> float | None:
    """Share of True in %, None for no element."""
    return 100.0 * int(hits.sum()) / hits.numel() if hits.numel() else None


def harmonic_mean(base: float | None, novel: float | None) -> float | None:
    """2BN / (B + N); 0 when both are 0, None when either is missing."""
    if base is None or novel is None:
        return None
    return 2 * base * novel / (base + novel) if base + novel > 0 else 0.0


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and population std (ddof = 0) of the present values; (None, None) when none is."""
    xs = [v for v in values if v is not None]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / len(xs))


def base_to_novel_summary(base: Sequence[float | None], novel: Sequence[float | None]) -> dict[str, float | None]:
    """Mean base and novel accuracy over splits and the HM of those means."""
    b, _ = mean_std(base)
    n, _ = mean_std(novel)
    return {"base": b, "novel": n, "hm": harmonic_mean(b, n)}
