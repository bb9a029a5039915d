"""INT8 vs fp32 ONNX Runtime on this CPU: every INT8 variant's (and OpenVINO candidate's) speed-up and agreement
on real clips, in one run.

Exports a random-weight student (speed does not depend on the weights; agreement does, so the
agreement figures measure how faithfully INT8 follows fp32 on these weights, not accuracy),
then runs `calibrate_int8` once with every variant as a candidate and the gate open: one
calibration (the range cache serves all static variants; dynamic ones need none), and all
variants timed interleaved with fp32 in the same call, so their speed-ups compare. Each figure is printed beside this CPU's 8-bit
dot-product features and the load average, and the variant `froster-edge calibrate` keeps on
this CPU (its candidates for these features, the fastest that passes the default gate) is marked.
Where openvino is installed its candidates for this CPU (calibration/ov_route.py) are gated in the
same call, and the line `kept vs ORT` gives the kept candidate's speed-up over the ONNX Runtime
variant calibrate would keep without OpenVINO (both timed interleaved in this run).

Videos: ../shared/data/action_clips when present, plus the repository's clips; the label table
is Kinetics-400's names when ../shared/data/class_lists is present, else the demo classes.
Usage:
    python benchmarks/bench_int8.py [--model ViT-B-32] [--frames 8] [--max-clips 32] [--reps 7]
        [--variants u8s8 u8s8-7bit ...] [--ops linear] [--bundle DIR | --keep DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from froster_edge.bundle.ov_sessions import installed as ov_installed
from froster_edge.calibration.calibrate import calibrate_int8
from froster_edge.calibration.cpu_features import detect
from froster_edge.calibration.gate import decide
from froster_edge.calibration.options import CalibrationOptions, GateThresholds
from froster_edge.calibration.ov_route import OV_CANDIDATES, ov_candidates
from froster_edge.calibration.variants import VARIANTS, candidates
from froster_edge.info import environment

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def export(model: str, frames: int, out: Path, videos: Path, classes_file: Path) -> Path:
    import torch

    from froster_edge.config import StudentConfig
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions
    from froster_edge.model.factory import create_student
    from froster_edge.prompts import read_class_texts

    t = time.perf_counter()
    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=model, pretrained=None, num_frames=frames)).eval()
    export_bundle(student, out, read_class_texts(classes_file), sorted(videos.iterdir())[:2],
                  ExportOptions(fp16=False, max_parity_clips=2))
    print(f"exported a random {model} T={frames} bundle in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--max-clips", type=int, default=32)
    p.add_argument("--reps", type=int, default=7)
    ov_here = [c.name for c in ov_candidates()[0]] if ov_installed() else []
    p.add_argument("--variants", nargs="*", default=list(VARIANTS) + ov_here, choices=list(VARIANTS) + list(OV_CANDIDATES))
    p.add_argument("--ops", default="linear", choices=["linear", "all"])
    p.add_argument("--bundle", type=Path, help="measure this exported bundle (a copy of it) instead of exporting one")
    p.add_argument("--keep", type=Path, help="export into this folder (kept, for --bundle later) instead of a temporary one")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    classes_file = SHARED / "class_lists" / "kinetics400_label_map.txt"
    classes_file = classes_file if classes_file.is_file() else ROOT / "examples/clips/classes.txt"
    cpu = detect()
    with tempfile.TemporaryDirectory() as d:
        videos = Path(d) / "videos"
        videos.mkdir()
        for src in [ROOT / "examples" / "clips", SHARED / "action_clips"]:
            for f in sorted(src.glob("*")) if src.is_dir() else []:
                if f.suffix in (".mp4", ".avi") and not (videos / f.name).exists():
                    (videos / f.name).symlink_to(f.resolve())
        base = a.bundle or export(a.model, a.frames, (a.keep or Path(d)) / "bundle", videos, classes_file)
        bundle = Path(d) / "measured"
        shutil.copytree(base, bundle, ignore=shutil.ignore_patterns("calibration"))
        options = CalibrationOptions(max_clips=a.max_clips, reps=a.reps, ops=a.ops, variants=tuple(a.variants),
                                     thresholds=GateThresholds(0.0, 0.0, -1.0))
        load_before = os.getloadavg()
        r = calibrate_int8(bundle, videos, options=options)
        load_after = os.getloadavg()
    gate = CalibrationOptions().thresholds
    ort_tried = {v.name for v in candidates(cpu)[0]}
    tried = ort_tried | set(ov_here)

    def kept_of(names: set[str]) -> dict | None:
        passing = [c for c in r["candidates"] if c["name"] in names and decide(c, gate)[0]]
        return min(passing, key=lambda c: c["int8_ms"]) if passing else None

    kept_c, ort_c = kept_of(tried), kept_of(ort_tried)
    kept = kept_c["name"] if kept_c else None
    load = f"load {load_before[0]:.1f} -> {load_after[0]:.1f}"
    print(f"CPU: {environment()['cpu']}, {os.cpu_count()} cores, {cpu.describe()}; flags {' '.join(cpu.flags) or '-'}; {load}")
    for c in r["candidates"]:
        mark = " <- kept on this CPU" if c["name"] == kept else (" (a candidate here)" if c["name"] in tried else "")
        print(f"[{cpu.dot_product}] {c['name']:22s} agreement {c['top1_agreement']:6.1%}  min cos {c['min_cosine']:.4f}  "
              f"fp32 {c['float_ms']:.0f} ms  int8 {c['int8_ms']:.0f} ms  speed-up {c['speedup']:.2f}x{mark}", flush=True)
    if kept is None:
        print(f"[{cpu.dot_product}] no candidate for this CPU passes the default gate: calibrate would refuse")
    elif ort_c is not None:
        print(f"[{cpu.dot_product}] kept vs ORT: {kept} {ort_c['int8_ms'] / kept_c['int8_ms']:.2f}x faster than {ort_c['name']}, "
              "the ONNX Runtime variant calibrate keeps without OpenVINO (same run)")
    report = {"machine": {k: v for k, v in environment().items() if k != "platform"}, "cpu_features": cpu.to_dict(),
              "load_average_1min": {"before": load_before[0], "after": load_after[0]}, "model": a.model, "frames": a.frames,
              "classes": classes_file.name, "ops": a.ops,
              "calibration_clips": r["calibration"]["clips"], "held_out_clips": r["gate"]["held_out_clips"],
              "held_out_videos": len(r["held_out"]["videos"]), "kept_on_this_cpu": kept,
              "ort_kept_on_this_cpu": ort_c["name"] if ort_c else None,
              "kept_vs_ort_kept": round(ort_c["int8_ms"] / kept_c["int8_ms"], 3) if kept_c and ort_c else None,
              "candidates_for_this_cpu": sorted(tried), "variants": {c["name"]: c for c in r["candidates"]}}
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
