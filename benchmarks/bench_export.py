"""Export speed figures, as ratios measured in one run (these machines are noisy; ratios hold).

1. Video encoder latency, ONNX Runtime (fp32, CPU provider) vs torch eager, same weights, same
   uint8 input, interleaved repetitions, median of each; optional fp16 ONNX on the same provider.
2. On --device cuda: torch fp32 vs fp16 autocast (and ONNX Runtime CUDA fp32/fp16 where the
   provider exists), with the fp16 cosine to fp32.
3. The wall time of a whole `export_bundle` (ONNX export of both encoders, fp16 copy, label
   table, parity gates) for --export-model.

Random weights: speed does not depend on them. Usage:
    python benchmarks/bench_export.py [--model ViT-B-32] [--frames 8] [--streams 1] [--reps 7]
        [--export-model ViT-B-16] [--device cpu|cuda] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from froster_edge.bundle.parity import compare
from froster_edge.calibration.gate import interleaved_median_ms
from froster_edge.config import StudentConfig
from froster_edge.export.bundle import export_bundle
from froster_edge.export.onnx_graphs import VideoEncoderGraph, export_video_encoder, to_fp16
from froster_edge.export.options import ExportOptions
from froster_edge.info import environment
from froster_edge.model.factory import create_student
from froster_edge.prompts import ClassText

ROOT = Path(__file__).resolve().parents[1]


def video_latency(model: str, frames: int, streams: int, reps: int, device: str, fp16_cpu: bool) -> dict:
    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=model, pretrained=None, num_frames=frames)).eval()
    size = student.model_cfg["vision_cfg"]["image_size"]
    x = np.random.default_rng(0).integers(0, 256, (streams, frames, size, size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as d:
        onnx_path = export_video_encoder(student, Path(d) / "video.onnx", streams)
        half_path = to_fp16(onnx_path, Path(d) / "video.fp16.onnx")
        graph = VideoEncoderGraph(student).eval()
        out: dict = {"model": model, "frames": frames, "streams": streams, "image_size": size}
        if device == "cpu":
            sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
            xt = torch.from_numpy(x)
            fns = {"torch_eager_cpu": lambda: graph(xt), "ort_cpu_fp32": lambda: sess.run(None, {"frames": x})}
            if fp16_cpu:
                half = ort.InferenceSession(str(half_path), providers=["CPUExecutionProvider"])
                fns["ort_cpu_fp16"] = lambda: half.run(None, {"frames": x})
            with torch.inference_mode():
                out["ms"] = {k: round(v, 2) for k, v in interleaved_median_ms(fns, reps).items()}
            out["ort_speedup_vs_torch"] = round(out["ms"]["torch_eager_cpu"] / out["ms"]["ort_cpu_fp32"], 3)
        else:
            graph = graph.cuda()
            xt = torch.from_numpy(x).cuda()

            def fp16():
                with torch.autocast("cuda", dtype=torch.float16):
                    return graph(xt)

            fns = {"torch_cuda_fp32": lambda: graph(xt), "torch_cuda_fp16_autocast": fp16}
            if "CUDAExecutionProvider" in ort.get_available_providers():
                s32 = ort.InferenceSession(str(onnx_path), providers=["CUDAExecutionProvider"])
                s16 = ort.InferenceSession(str(half_path), providers=["CUDAExecutionProvider"])
                fns["ort_cuda_fp32"] = lambda: s32.run(None, {"frames": x})
                fns["ort_cuda_fp16"] = lambda: s16.run(None, {"frames": x})
            with torch.inference_mode():
                out["ms"] = {k: round(v, 2) for k, v in interleaved_median_ms(fns, reps, torch.cuda.synchronize).items()}
                ref = graph(xt).float().cpu().numpy()
                out["fp16_vs_fp32"] = compare(fp16().float().cpu().numpy(), ref)
            out["fp16_speedup_vs_fp32"] = round(out["ms"]["torch_cuda_fp32"] / out["ms"]["torch_cuda_fp16_autocast"], 3)
    return out


def export_time(model: str, frames: int) -> dict:
    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=model, pretrained=None, num_frames=frames)).eval()
    classes = [ClassText.parse(line) for line in (ROOT / "examples/clips/classes.txt").read_text().splitlines() if line.strip()]
    videos = sorted((ROOT / "examples/clips").glob("*.mp4"))[:2]
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        result = export_bundle(student, Path(d) / "bundle", classes, videos, ExportOptions(max_parity_clips=2))
        total = time.perf_counter() - t
        sizes = {f: round((result.bundle / f).stat().st_size / 2**20, 1) for f in result.manifest["files"]}
    return {"model": model, "frames": frames, "total_s": round(total, 1),
            "stages_s": {k: round(v, 1) for k, v in result.seconds.items()}, "file_mib": sizes,
            "gates": [{k: g[k] for k in ("name", "max_abs", "min_cosine", "passed")} for g in result.manifest["parity"]["gates"]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--fp16-cpu", action="store_true", help="also time the fp16 ONNX on the CPU provider")
    p.add_argument("--export-model", default=None, help="also time a whole export_bundle of this model")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    report = {"machine": {k: v for k, v in environment().items() if k != "platform"},
              "latency": video_latency(a.model, a.frames, a.streams, a.reps, a.device, a.fp16_cpu)}
    print(json.dumps(report["latency"], indent=1))
    if a.export_model:
        report["export"] = export_time(a.export_model, a.frames)
        print(json.dumps(report["export"], indent=1))
    if a.json:
        a.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
