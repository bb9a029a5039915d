"""The GPU figures of scripts/device_check.sh, as one JSON report.

- parity: the student's video embeddings in fp16 and bf16 (torch autocast on CUDA) against fp32 on the
  same GPU, and fp32 on the GPU against fp32 on the CPU, on the repository's real clips: max abs
  difference, min cosine, top-1 agreement on a label table of examples/clips/classes.txt;
- throughput: clips/s of the exported encoder wrapper (export's VideoEncoderGraph: uint8 frames in)
  at batch 1 and 32, fp32 and fp16, each with its peak memory;
- train: one distillation training step (benchmarks/bench_train.py's: student forward/backward,
  teacher, AdamW) with its time and peak memory;
- cuda_bindings: a device buffer round trip (cudaMalloc, cudaStreamCreate, cudaMemcpyAsync in and out,
  cudaStreamSynchronize, cudaFree) through bundle.engines' cuda_runtime/cuda_check, the helpers
  TensorRTEngine uses, and the bytes compared;
- torch_free_runtime: `froster-edge run --backend ort-cpu` on a bundle of the tiny student, in an
  interpreter where importing torch raises ImportError;
- memory: the GPU's total and the peak allocated by each part;
- gpu_tests: pass/fail/error/skip counts of the pytest run (its junit XML) and the names that failed.

Random weights (speed and numerical agreement do not depend on them; accuracy would). Every part is
bounded (few repetitions, a subprocess timeout), so the report takes a few minutes on an H100; a
part that fails records its error and the others still run. `--dry-run` runs every part on the CPU
with the tiny test model, so the report's shape is testable anywhere.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import torch

from froster_edge.bundle.label_builder import build_label_table
from froster_edge.bundle.parity import compare, load_parity_clips
from froster_edge.config import StudentConfig
from froster_edge.export.onnx_graphs import VideoEncoderGraph
from froster_edge.export.reference import torch_text_encoder
from froster_edge.info import environment
from froster_edge.io import atomic_write_json
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


def embed(graph: VideoEncoderGraph, clips: np.ndarray, device: torch.device, dtype: torch.dtype | None) -> np.ndarray:
    with torch.no_grad(), torch.autocast(device.type, dtype=dtype or torch.float16, enabled=dtype is not None):
        return graph(torch.from_numpy(clips).to(device)).float().cpu().numpy()


def parity(student, clips: np.ndarray, device: torch.device) -> dict:
    """fp16 and bf16 vs fp32 on the device, and the device's fp32 vs the CPU's."""
    table = build_label_table(read_class_texts(CLIPS / "classes.txt"), torch_text_encoder(student), student.model_cfg,
                              "device-report", float(student.logit_scale.detach().exp()))
    graph = VideoEncoderGraph(student).eval()
    fp32 = embed(graph.to(device), clips, device, None)
    out = {"clips": int(len(clips))}
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        if device.type == "cuda":
            out[f"{name}_vs_fp32"] = compare(embed(graph, clips, device, dtype), fp32, table)
        else:
            out[f"{name}_vs_fp32"] = compare(fp32, fp32, table)
    out["autocast"] = "torch.autocast float16 / bfloat16" if device.type == "cuda" else "not run (no CUDA): fp32 against itself"
    cpu = embed(graph.to("cpu"), clips, torch.device("cpu"), None)
    graph.to(device)
    out["device_fp32_vs_cpu_fp32"] = compare(fp32, cpu, table)
    return out


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
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    counts = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    counts["passed"] = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    counts["failed"] = sorted(f"{c.get('classname', '')}::{c.get('name', '')}" for c in root.iter("testcase")
                              if c.find("failure") is not None or c.find("error") is not None)
    counts["skip_reasons"] = sorted({s.get("message", "") for s in root.iter("skipped")})
    return counts


def cuda_round_trip(nbytes: int = 1 << 20) -> dict:
    """A device buffer round trip through the cuda-python helpers TensorRTEngine runs on."""
    from froster_edge.bundle.engines import cuda_check, cuda_runtime

    cudart = cuda_runtime()
    host = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    back = np.zeros_like(host)
    h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    t = time.perf_counter()
    buf = cuda_check(cudart.cudaMalloc(nbytes), "cudaMalloc")
    stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
    try:
        cuda_check(cudart.cudaMemcpyAsync(buf, host.ctypes.data, nbytes, h2d, stream), "cudaMemcpyAsync")
        cuda_check(cudart.cudaMemcpyAsync(back.ctypes.data, buf, nbytes, d2h, stream), "cudaMemcpyAsync")
        cuda_check(cudart.cudaStreamSynchronize(stream), "cudaStreamSynchronize")
    finally:
        cuda_check(cudart.cudaFree(buf), "cudaFree")
        cuda_check(cudart.cudaStreamDestroy(stream), "cudaStreamDestroy")
    return {"bytes": nbytes, "equal": bool(np.array_equal(host, back)), "ms": round(1000 * (time.perf_counter() - t), 3),
            "module": cudart.__name__}


BLOCK_TORCH = (
    "import sys\n"
    "class _NoTorch:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'open_clip', 'torchvision'):\n"
    "            raise ImportError(f'{name} is blocked: the torch-free runtime must not import it')\n"
    "sys.meta_path.insert(0, _NoTorch())\n"
)


def torch_free_runtime(work: Path, timeout: float) -> dict:
    """`froster-edge run --backend ort-cpu` on a bundle of the tiny student, torch unimportable in its process."""
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions

    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=str(TINY), pretrained=None, num_frames=4, image_size=64)).eval()
    videos = sorted(p for p in CLIPS.iterdir() if p.suffix in (".mp4", ".avi"))
    bundle = work / "bundle"
    export_bundle(student, bundle, read_class_texts(CLIPS / "classes.txt"), videos[:2],
                  ExportOptions(fp16=False, max_parity_clips=2))
    stats = work / "stats.json"
    args = ["run", "--bundle", str(bundle), "--source", str(videos[0]), "--backend", "ort-cpu", "--jsonl",
            "--max-decisions", "3", "--stats-json", str(stats)]
    code = BLOCK_TORCH + f"sys.argv = ['froster-edge', *{args!r}]\nfrom froster_edge.cli import main\nmain()\n"
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    decisions = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    out = {"returncode": proc.returncode, "seconds": round(time.perf_counter() - t, 2), "decisions": len(decisions)}
    if proc.returncode != 0:
        out["stderr_tail"] = proc.stderr.strip().splitlines()[-3:]
    if stats.is_file():
        out["backend"] = json.loads(stats.read_text()).get("backend")
    return out


def part(report: dict, out: Path, name: str, fn, *args):
    """report[name] = fn(*args), or the error it raised: one failing part leaves the others to run. The
    report is written after each part, so a run stopped by the script's time limit leaves what it measured."""
    t = time.perf_counter()
    try:
        report[name] = fn(*args)
    except Exception as e:  # the report records any failure of a part, with where it happened
        report[name] = {"error": f"{type(e).__name__}: {e}", "where": traceback.format_exc().strip().splitlines()[-3:]}
    report.setdefault("part_seconds", {})[name] = round(time.perf_counter() - t, 1)
    atomic_write_json(out, report)
    return report[name]


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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    env = environment()
    report: dict = {"dry_run": args.dry_run, "ran": True, "device": str(device), "model": Path(model).name, "frames": frames,
                    "image_size": size, "machine": {k: env.get(k) for k in ("cpu", "gpus", "torch", "python", "onnxruntime", "tensorrt")}}
    if device.type == "cuda":
        report["machine"]["cuda"] = torch.version.cuda
        report["memory"] = {"total_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 2)}
    t0 = time.perf_counter()
    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=model, pretrained=None, num_frames=frames, image_size=size)).eval().to(device)
    clips = load_parity_clips(sorted(p for p in CLIPS.iterdir() if p.suffix in (".mp4", ".avi")), frames, size, 4).frames
    reset_peak(device)
    part(report, out, "parity", parity, student, clips, device)
    part(report, out, "throughput", throughput, student, frames, size, batches, reps, device)
    del student
    if device.type == "cuda":
        torch.cuda.empty_cache()
    part(report, out, "train", train_step, model, frames, size, train[0], train[1], max(reps // 2, 1), device)
    report.setdefault("memory", {})["peak_train_gib"] = report["train"].get("peak_memory_gib")
    part(report, out, "cuda_bindings", cuda_round_trip)
    with tempfile.TemporaryDirectory() as work:
        part(report, out, "torch_free_runtime", torch_free_runtime, Path(work), 60.0)
    report["gpu_tests"] = junit_counts(Path(args.junit)) if args.junit else None
    report["seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_json(out, report)
    print(summary(report) + f" -> {out}")
    parts = ["parity", "throughput", "train", "torch_free_runtime"] + ([] if args.dry_run else ["cuda_bindings"])  # no driver on a CPU
    failed = [k for k in parts if isinstance(report[k], dict) and ("error" in report[k] or report[k].get("returncode")
                                                                   or report[k].get("equal") is False)]
    if failed:
        sys.exit(f"device_report: failed parts: {', '.join(failed)}")


def summary(report: dict) -> str:
    """One line of the headline figures (or each part's error)."""
    bits = []
    p = report["parity"]
    bits.append(p.get("error") or "fp16/bf16 vs fp32: min cos "
                f"{p['fp16_vs_fp32']['min_cosine']:.5f}/{p['bf16_vs_fp32']['min_cosine']:.5f}")
    t = report["throughput"]
    bits.append(t["error"] if isinstance(t, dict) else ", ".join(f"{x['precision']} b{x['batch']} {x['clips_per_s']:.1f} clips/s" for x in t))
    bits.append(report["train"].get("error") or f"train step {report['train']['step_s'] * 1000:.0f} ms")
    c = report["cuda_bindings"]
    bits.append(f"cuda-bindings round trip: {c.get('error') or ('equal' if c['equal'] else 'DIFFERENT')}")
    r = report["torch_free_runtime"]
    run = r.get("error") or f"exit {r['returncode']}, {r['decisions']} decisions"
    bits.append(f"torch-free run: {run}")
    return "; ".join(bits)


if __name__ == "__main__":
    main()
