"""The GPU figures of scripts/device_check.sh, as one JSON report.

- parity: the student's video embeddings in fp16 (torch autocast on CUDA) against fp32 on the same
  GPU, and fp32 on the GPU against fp32 on the CPU, on the repository's real clips: max abs
  difference, min cosine, top-1 agreement on a label table of examples/clips/classes.txt;
- throughput: clips/s of the video encoder graph (uint8 frames in, as exported) at batch 1 and 32,
  fp32 and fp16;
- train: one training step (benchmarks/bench_train.py's: student forward/backward, teacher, AdamW)
  with its peak memory;
- memory: the GPU's total and the peak allocated by each part;
- gpu_tests: pass/fail/skip counts of the pytest run (its junit XML), when the script gives one.

Random weights (speed and numerical agreement do not depend on them; accuracy would). `--dry-run`
runs every part on the CPU with the tiny test model, so the report's shape is testable anywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

from froster_edge.config import StudentConfig
from froster_edge.bundle.label_builder import build_label_table
from froster_edge.bundle.parity import compare, load_parity_clips
from froster_edge.export.onnx_graphs import VideoEncoderGraph
from froster_edge.export.reference import torch_text_encoder
from froster_edge.info import environment
from froster_edge.model.factory import create_student
from froster_edge.prompts import read_class_texts

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "examples" / "clips"
TINY = ROOT / "configs" / "models" / "tiny-vit.json"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 2**30, 3) if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def embed(graph: VideoEncoderGraph, clips: np.ndarray, device: torch.device, half: bool) -> np.ndarray:
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=half):
        return graph(torch.from_numpy(clips).to(device)).float().cpu().numpy()


def parity(student, clips: np.ndarray, device: torch.device) -> dict:
    """fp16 vs fp32 on the device, and the device's fp32 vs the CPU's."""
    table = build_label_table(read_class_texts(CLIPS / "classes.txt"), torch_text_encoder(student), student.model_cfg,
                              "device-report", float(student.logit_scale.detach().exp()))
    graph = VideoEncoderGraph(student).eval()
    fp32 = embed(graph.to(device), clips, device, half=False)
    fp16 = embed(graph, clips, device, half=device.type == "cuda")
    cpu = embed(graph.to("cpu"), clips, torch.device("cpu"), half=False)
    graph.to(device)
    return {"clips": int(len(clips)), "fp16_vs_fp32": compare(fp16, fp32, table), "device_fp32_vs_cpu_fp32": compare(fp32, cpu, table),
            "fp16": "torch.autocast float16" if device.type == "cuda" else "not run (no CUDA): fp32 against itself"}


def throughput(student, frames: int, size: int, batches: list[int], reps: int, device: torch.device) -> list[dict]:
    graph = VideoEncoderGraph(student).eval().to(device)
    out = []
    for half in (False, True) if device.type == "cuda" else (False,):
        for batch in batches:
            reset_peak(device)
            x = torch.randint(0, 256, (batch, frames, size, size, 3), dtype=torch.uint8, device=device)
            times = []
            with torch.no_grad(), torch.autocast(device.type, dtype=torch.float16, enabled=half):
                for i in range(reps + 2):  # 2 warm-up calls
                    sync(device)
                    t = time.perf_counter()
                    graph(x)
                    sync(device)
                    if i >= 2:
                        times.append(time.perf_counter() - t)
            s = statistics.median(times)
            out.append({"batch": batch, "precision": "fp16" if half else "fp32", "ms": round(1000 * s, 3),
                        "clips_per_s": round(batch / s, 2), "peak_memory_gib": peak_gib(device)})
    return out


def train_step(model: str, frames: int, size: int, batch: int, classes: int, reps: int, device: torch.device) -> dict:
    spec = importlib.util.spec_from_file_location("bench_train", ROOT / "benchmarks" / "bench_train.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    reset_peak(device)
    args = argparse.Namespace(model=model, frames=frames, size=size, batch=batch, classes=classes, amp="auto",
                              grad_checkpointing=False, reps=reps)
    return {**bench.step_and_teacher(args, device), "model": Path(model).name}


def junit_counts(path: Path) -> dict | None:
    if not path.is_file():
        return None
    root = ET.parse(path).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["skip_reasons"] = sorted({s.get("message", "") for s in root.iter("skipped")})
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="the JSON report to write")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny model, small batches: check the report, not the GPU")
    ap.add_argument("--junit", default=None, help="junit XML of the GPU pytest run, counted into the report")
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    if args.dry_run:
        device, model, frames, size, batches, reps, train = torch.device("cpu"), str(TINY), 4, 64, [1, 2], 1, (2, 5)
    else:
        if not torch.cuda.is_available():
            sys.exit("device_report: no CUDA GPU visible (use --dry-run to check the report on a CPU)")
        device, model, frames, size, batches, reps, train = torch.device("cuda"), "ViT-B-16", 8, 224, [1, 32], args.reps, (8, 400)
    env = environment()
    report: dict = {"dry_run": args.dry_run, "device": str(device), "model": Path(model).name, "frames": frames, "image_size": size,
                    "machine": {k: env.get(k) for k in ("cpu", "gpus", "torch", "python", "onnxruntime", "tensorrt")}}
    if device.type == "cuda":
        report["machine"]["cuda"] = torch.version.cuda
        report["memory"] = {"total_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 2)}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=model, pretrained=None, num_frames=frames, image_size=size)).eval().to(device)
    clips = load_parity_clips(sorted(p for p in CLIPS.iterdir() if p.suffix in (".mp4", ".avi")), frames, size, 4).frames
    reset_peak(device)
    report["parity"] = parity(student, clips, device)
    report["throughput"] = throughput(student, frames, size, batches, reps, device)
    del student
    if device.type == "cuda":
        torch.cuda.empty_cache()
    report["train"] = train_step(model, frames, size, train[0], train[1], max(reps // 2, 1), device)
    report.setdefault("memory", {})["peak_train_gib"] = report["train"].get("peak_memory_gib")
    report["gpu_tests"] = junit_counts(Path(args.junit)) if args.junit else None
    report["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    p = report["parity"]["fp16_vs_fp32"]
    print(f"fp16 vs fp32: min cos {p['min_cosine']:.5f}, top-1 {p['top1_agreement']:.0%}; "
          + ", ".join(f"{t['precision']} b{t['batch']} {t['clips_per_s']:.1f} clips/s" for t in report["throughput"])
          + f"; train step {report['train']['step_s'] * 1000:.0f} ms -> {args.out}")


if __name__ == "__main__":
    main()
