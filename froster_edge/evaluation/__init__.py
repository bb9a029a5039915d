"""Evaluation: scoring students on video lists, and the paper's protocols (base-to-novel, cross-dataset).

`evaluate(student, items, class_texts)` scores one list; `run_protocol` runs a protocol config
(configs/eval/*.yaml), encoding each video once per student.

See docs/evaluation.md.
"""

from __future__ import annotations

from .core import (
    ClassAccuracy,
    EncodedVideos,
    EvalResult,
    class_embeddings,
    encode_videos,
    evaluate,
    merge_encoded,
    score_videos,
)
from .metrics import base_to_novel_summary, harmonic_mean, mean_std, topk_hits
from .protocol import (
    EvalPart,
    EvalSplit,
    Protocol,
    ProtocolReport,
    SplitReport,
    StudentSource,
    load_protocol,
    prepare_part,
    run_protocol,
    single_protocol,
)

__all__ = [
    "ClassAccuracy",
    "EncodedVideos",
    "EvalPart",
    "EvalResult",
    "EvalSplit",
    "Protocol",
    "ProtocolReport",
    "SplitReport",
    "StudentSource",
    "base_to_novel_summary",
    "class_embeddings",
    "encode_videos",
    "evaluate",
    "harmonic_mean",
    "load_protocol",
    "mean_std",
    "merge_encoded",
    "prepare_part",
    "run_protocol",
    "score_videos",
    "single_protocol",
    "topk_hits",
]
