"""Classify a video file with a bundle, from Python, without torch.

    python examples/classify_clip.py BUNDLE examples/clips/stgcn_clean_and_jerk.mp4

Streams the file through the same pipeline as `froster-edge run` (the bundle's sampling spec, the
fastest backend available, EMA smoothing) and keeps every decision in a sink of its own.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from froster_edge.runtime.options import RUN_DEFAULTS, ClassifierOptions
from froster_edge.runtime.pipeline import Pipeline
from froster_edge.runtime.sinks import Decision


class Keep:
    """A decision sink: anything with emit(decision) and close()."""

    def __init__(self) -> None:
        self.decisions: list[Decision] = []

    def emit(self, decision: Decision) -> None:
        self.decisions.append(decision)

    def close(self) -> None:
        pass


def classify(bundle: str, video: str, top_k: int = 3) -> list[Decision]:
    """Every decision of `video` through `bundle`, oldest first."""
    options = replace(RUN_DEFAULTS, sources=[video], classifier=ClassifierOptions(top_k=top_k, smoothing="ema"))
    keep = Keep()
    stats = Pipeline(bundle, options, [keep]).run()
    print(stats.table())
    return keep.decisions


def main(argv: list[str] | None = None) -> list[Decision]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle")
    parser.add_argument("video")
    parser.add_argument("--top-k", type=int, default=3)
    args = parser.parse_args(argv)
    decisions = classify(args.bundle, args.video, args.top_k)
    for d in decisions:
        others = ", ".join(f"{label} {score:.2f}" for label, score in d.top[1:])
        print(f"{d.media_time:7.2f} s  {d.label} {d.score:.2f}  ({others})")
    return decisions


if __name__ == "__main__":
    main()
