"""INT8 vs fp32 ONNX Runtime on this CPU: speed-up and agreement on real clips, per quantization choice.

Exports a random-weight student (speed does not depend on the weights; agreement does, so the
agreement figures measure how faithfully INT8 follows fp32 on these weights, not accuracy),
then runs `calibrate_int8` once per variant on copies of the bundle with the gate open, so each
variant's figures (held-out top-1 agreement on the label table, min/mean cosine, fp32 and INT8
latency timed interleaved in one run) are reported side by side.

Videos: ../shared/data/action_clips when present, plus the repository's clips; the label table
is Kinetics-400's names when ../shared/data/class_lists is present, else the demo classes.
Usage:
    python benchmarks/bench_int8.py [--model ViT-B-32] [--frames 8] [--max-clips 32] [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from froster_edge.calibration.calibrate import calibrate_int8
from froster_edge.calibration.options import CalibrationOptions, GateThresholds
from froster_edge.config import StudentConfig
from froster_edge.export.bundle import export_bundle
from froster_edge.export.options import ExportOptions
from froster_edge.info import environment
from froster_edge.model.factory import create_student
from froster_edge.prompts import read_class_texts

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

VARIANTS = {
    "linear uint8 (default)": {},
    "linear uint8 + ORT pre-processing": {"preprocess": True},
    "all uint8": {"ops": "all"},
    "linear int8": {"activation": "int8"},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-clips", type=int, default=32)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--variants", nargs="*", default=list(VARIANTS))
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    classes_file = SHARED / "class_lists" / "kinetics400_label_map.txt"
    classes = read_class_texts(classes_file if classes_file.is_file() else ROOT / "examples/clips/classes.txt")
    with tempfile.TemporaryDirectory() as d:
        videos = Path(d) / "videos"
        videos.mkdir()
        for src in [ROOT / "examples" / "clips", SHARED / "action_clips"]:
            for f in sorted(src.glob("*")) if src.is_dir() else []:
                if f.suffix in (".mp4", ".avi") and not (videos / f.name).exists():
                    (videos / f.name).symlink_to(f.resolve())
        torch.manual_seed(0)
        student = create_student(StudentConfig(model_name=a.model, pretrained=None, num_frames=a.frames)).eval()
        base = Path(d) / "bundle"
        export_bundle(student, base, classes, sorted(videos.iterdir())[:2], ExportOptions(fp16=False, max_parity_clips=2))
        del student
        options = CalibrationOptions(max_clips=a.max_clips, reps=a.reps, thresholds=GateThresholds(0.0, 0.0))
        rows = {}
        for name in a.variants:
            bundle = Path(d) / "variant"
            shutil.rmtree(bundle, ignore_errors=True)
            shutil.copytree(base, bundle)
            r = calibrate_int8(bundle, videos, options=replace(options, **VARIANTS[name]))
            rows[name] = {**r["gate"], "calibration_clips": r["calibration"]["clips"], "held_out_videos": len(r["held_out"]["videos"]),
                          "quantized_nodes": r["int8"]["quantized_nodes"]}
            print(f"{name:36s} agreement {rows[name]['top1_agreement']:.1%}  min cos {rows[name]['min_cosine']:.4f}  "
                  f"fp32 {rows[name]['float_ms']:.0f} ms  int8 {rows[name]['int8_ms']:.0f} ms  speed-up {rows[name]['speedup']:.2f}x",
                  flush=True)
    report = {"machine": {k: v for k, v in environment().items() if k != "platform"}, "model": a.model, "frames": a.frames,
              "classes": len(classes), "variants": rows}
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
