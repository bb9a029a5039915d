"""Training speed, measured in one run: the training step, the teacher's share of it, and the data loader.

1. Training step: `froster_edge.train.step.train_step` (student forward/backward with the class-text
   matrix recomputed from 2 prompts per class, frozen-teacher forward, clip, AdamW) on a batch
   of real clips from examples/clips, median over repetitions -> clips/s.
2. The teacher's share: the teacher's forward on the same frames and prompts (no grad, reduced
   precision on a GPU), timed alone, over the step time.
3. The data loader: clips/s of the training VideoDataset (decode, random clip, jitter, crop, flip)
   through a DataLoader with --workers workers; "keeps up" when it is at least the step's rate.

Random weights (speed does not depend on them). Usage:
    python benchmarks/bench_train.py                          # tiny recipe on the CPU
    python benchmarks/bench_train.py --device cuda --model ViT-B-16 --frames 8 --size 224 --batch 8 \
        --classes 400 --workers 16 --json out.json            # the paper's student on a GPU, AMP
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from froster_edge.config import OptimConfig, StudentConfig
from froster_edge.data import VideoDataset, collate_clips, init_worker, read_classes, read_video_list
from froster_edge.info import environment
from froster_edge.model.factory import create_distiller
from froster_edge.prompts import ClassText
from froster_edge.train.optim import build_optimizer
from froster_edge.train.step import autocast_dtype, class_prompt_tokens, step_prompts, train_step

ROOT = Path(__file__).resolve().parents[1]
CLIPS = ROOT / "examples" / "clips"
TINY = ROOT / "configs" / "train"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clip_items(n: int):
    """The repository's five clips, repeated to `n` items."""
    items = read_video_list(TINY / "tiny_train.txt", root=CLIPS)
    return [items[i % len(items)] for i in range(n)]


def step_and_teacher(args, device: torch.device) -> dict:
    torch.manual_seed(0)
    cfg = StudentConfig(model_name=args.model, pretrained=None, num_frames=args.frames, image_size=args.size,
                        grad_checkpointing=args.grad_checkpointing)
    d = create_distiller(cfg).to(device).train()
    amp = autocast_dtype(args.amp, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 else None
    params = [p for p in d.parameters() if p.requires_grad]
    opt = build_optimizer(d, OptimConfig(lr=1e-6))
    classes = read_classes(TINY / "tiny_classes.json")
    classes = [classes[i] if i < len(classes) else ClassText(f"action number {i}") for i in range(args.classes)]
    all_tokens = class_prompt_tokens(d.student.tokenize, classes).to(device)
    ds = VideoDataset(clip_items(args.batch), num_frames=args.frames, image_size=args.size, train=True, views=1)
    batch = collate_clips([ds[i] for i in range(args.batch)])
    frames, labels = batch["frames"][:, 0].to(device), (batch["labels"] % args.classes).to(device)

    def step(k: int) -> None:
        train_step(d, opt, [(frames, labels)], step_prompts(all_tokens, 0, k), params, amp_dtype=amp, scaler=scaler)

    def teacher(k: int) -> None:
        tokens = step_prompts(all_tokens, 0, k)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            d.teacher.encode_frames(frames)
            d.teacher.encode_text(tokens.flatten(0, 1))

    def timed(fn, k: int) -> float:
        sync(device)
        t0 = time.perf_counter()
        fn(k)
        sync(device)
        return time.perf_counter() - t0

    for k in range(2):  # warm-up (allocator, cuDNN/cuBLAS choices)
        step(k)
    steps, teach = [], []
    for k in range(args.reps):
        steps.append(timed(step, k))
        teach.append(timed(teacher, k))
    s, t = statistics.median(steps), statistics.median(teach)
    out = {"model": args.model, "frames": args.frames, "image_size": args.size, "batch": args.batch,
           "classes": args.classes, "amp": str(amp).replace("torch.", "") if amp else "off",
           "grad_checkpointing": args.grad_checkpointing, "step_s": s, "clips_per_s": args.batch / s,
           "teacher_s": t, "teacher_share": t / s}
    if device.type == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return out


def loader(args) -> dict:
    n = args.loader_batches * args.batch
    ds = VideoDataset(clip_items(n), num_frames=args.frames, image_size=args.size, train=True, views=1)
    dl = DataLoader(ds, batch_size=args.batch, num_workers=args.workers, collate_fn=collate_clips,
                    worker_init_fn=init_worker if args.workers else None, prefetch_factor=4 if args.workers else None)
    it = iter(dl)
    next(it)  # workers started and warm
    t0 = time.perf_counter()
    got = sum(b["frames"].shape[0] for b in it)
    s = time.perf_counter() - t0
    return {"workers": args.workers, "clips": got, "clips_per_s": got / s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "configs" / "models" / "tiny-vit.json"))
    ap.add_argument("--frames", type=int, default=4)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--classes", type=int, default=5, help="classes in the text matrix (K400: 400)")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--grad-checkpointing", action="store_true")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--loader-batches", type=int, default=6)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--loader-only", action="store_true", help="measure the data loader alone (e.g. 224 px on a CPU box)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    device = torch.device(args.device)

    env = environment()
    result = {"machine": {k: env[k] for k in ("cpu", "torch", "open_clip", "python", "gpus")},
              "threads": torch.get_num_threads(), "device": str(device), "loader": loader(args)}
    ld = result["loader"]
    print(f"machine: {env['cpu']}, {', '.join(env['gpus']) or 'no GPU'}, torch {env['torch']}, open_clip {env['open_clip']}, "
          f"{result['threads']} threads, device {device}")
    if args.loader_only:
        print(f"data loader T={args.frames} {args.size}px, {ld['workers']} workers: {ld['clips_per_s']:.1f} clips/s "
              f"({ld['clips_per_s'] / max(ld['workers'], 1):.1f} per worker)")
    else:
        result["step"] = s = step_and_teacher(args, device)
        result["loader_over_step"] = ld["clips_per_s"] / s["clips_per_s"]
        report(result)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


def report(result: dict) -> None:
    s, ld = result["step"], result["loader"]
    print(f"train step {Path(s['model']).name} T={s['frames']} {s['image_size']}px B={s['batch']} C={s['classes']} amp {s['amp']}: "
          f"{s['step_s'] * 1000:.0f} ms = {s['clips_per_s']:.1f} clips/s; teacher {s['teacher_s'] * 1000:.0f} ms = "
          f"{s['teacher_share']:.0%} of the step" + (f"; peak {s['peak_memory_gib']:.1f} GiB" if "peak_memory_gib" in s else ""))
    print(f"data loader, {ld['workers']} workers: {ld['clips_per_s']:.1f} clips/s = {result['loader_over_step']:.2f}x the step's rate "
          f"({'keeps up' if result['loader_over_step'] >= 1 else 'the step waits for data'})")


if __name__ == "__main__":
    main()
