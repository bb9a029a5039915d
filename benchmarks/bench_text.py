"""One action's prompt ensemble through a bundle's ONNX text encoder: the static 77-token graph
(bundles exported before) against the graph with a free token length fed the longest prompt.

What the web view's vocabulary change and `labels --bundle` spend their time on. Both graphs are
exported from the same student (or the static one taken from an existing bundle of that student),
timed alternately on ONNX Runtime's CPU provider, and checked to give the same embeddings.
Usage:
    python benchmarks/bench_text.py --student DIR [--static OLD_BUNDLE/text_encoder.onnx]
        [--action "Juggling: a person keeps three balls in the air"] [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from froster_edge.bundle.sessions import onnx_text_encoder
from froster_edge.bundle.tokenizer import open_clip_tokenizer
from froster_edge.export.onnx_graphs import export_text_encoder
from froster_edge.model.checkpoint import load_student
from froster_edge.prompts import ClassText, prompts_for


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--student", required=True, help="a saved student directory (random weights are fine)")
    ap.add_argument("--static", help="its bundle's text_encoder.onnx of the old static form (else exported here)")
    ap.add_argument("--action", default="Juggling: a person keeps three balls in the air")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--json")
    args = ap.parse_args()

    student = load_student(args.student).eval()
    context = student.model_cfg["text_cfg"].get("context_length", 77)
    tokenizer = open_clip_tokenizer(context)
    prompts = prompts_for(ClassText.parse(args.action))
    out: dict = {"model": student.config.model_name, "prompts": len(prompts), "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        dynamic = export_text_encoder(student, Path(tmp) / "dynamic.onnx")
        out["export_dynamic_s"] = time.perf_counter() - t
        static = Path(args.static) if args.static else export_text_encoder(student, Path(tmp) / "static.onnx", dynamic_length=False)
        encoders = {"static 77": (onnx_text_encoder(static), tokenizer(prompts)),
                    "dynamic, longest": (onnx_text_encoder(dynamic), tokenizer(prompts, pad_to="longest"))}
        out["tokens"] = {k: int(v[1].shape[1]) for k, v in encoders.items()}
        feats = {k: enc(tokens) for k, (enc, tokens) in encoders.items()}  # warm-up, and the comparison
        out["max_abs_diff"] = float(np.abs(feats["static 77"] - feats["dynamic, longest"]).max())
        times: dict[str, list[float]] = {k: [] for k in encoders}
        for _ in range(args.reps):
            for k, (enc, tokens) in encoders.items():
                t = time.perf_counter()
                enc(tokens)
                times[k].append(time.perf_counter() - t)
    out["seconds"] = times
    out["median_s"] = {k: statistics.median(v) for k, v in times.items()}
    out["speedup"] = out["median_s"]["static 77"] / out["median_s"]["dynamic, longest"]
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
