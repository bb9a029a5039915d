"""Student speed, as ratios measured in one run (this machine is noisy, ratios hold).

1. Forward time of the video encoder with neighbour-frame attention vs plain per-frame CLIP
   (`temporal_attention: none`), same weights, interleaved repetitions, median of each.
2. One training step (student forward/backward + frozen-teacher forward) of a small config, and
   the teacher's share of it.

Random weights: speed does not depend on them. Usage:
    python benchmarks/bench_student.py [--model ViT-B-32] [--frames 8] [--batch 1] [--reps 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from froster_edge.config import StudentConfig
from froster_edge.info import environment
from froster_edge.model.factory import create_distiller, create_student
from froster_edge.prompts import TEMPLATES

DEVICE = torch.device("cpu")


def sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def autocast():
    """bf16 autocast on a GPU (as training uses), nothing on the CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=DEVICE.type == "cuda")


def timed(fn) -> float:
    sync()
    t0 = time.perf_counter()
    with autocast():
        fn()
    sync()
    return time.perf_counter() - t0


def forward_ratio(model: str, frames: int, batch: int, reps: int, size: int) -> dict:
    torch.manual_seed(0)
    cfg = StudentConfig(model_name=model, pretrained=None, num_frames=frames, image_size=size)
    temporal = create_student(cfg).eval().to(DEVICE)
    plain = create_student(StudentConfig(**{**cfg.__dict__, "temporal_attention": "none"})).eval().to(DEVICE)
    plain.clip.load_state_dict(temporal.clip.state_dict())
    x = torch.randn(batch, frames, 3, size, size, device=DEVICE)
    times = {"neighbors": [], "none": []}
    with torch.inference_mode():
        for m in (temporal, plain):
            timed(lambda m=m: m.encode_video(x))  # warm-up
        for _ in range(reps):
            times["neighbors"].append(timed(lambda: temporal.encode_video(x)))
            times["none"].append(timed(lambda: plain.encode_video(x)))
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"model": model, "frames": frames, "batch": batch, "image_size": size,
            "neighbors_s": med["neighbors"], "none_s": med["none"], "overhead": med["neighbors"] / med["none"] - 1}


def train_step_share(model: str, frames: int, batch: int, reps: int, size: int, classes: int = 8) -> dict:
    torch.manual_seed(0)
    d = create_distiller(StudentConfig(model_name=model, pretrained=None, num_frames=frames, image_size=size))
    d.to(DEVICE).train()
    opt = torch.optim.AdamW([p for p in d.parameters() if p.requires_grad], lr=1e-6)
    names = [f"class {i}" for i in range(classes)]
    prompts = [[TEMPLATES[i % 28].format(n), n] for i, n in enumerate(names)]
    tokens = d.student.tokenize([p for ps in prompts for p in ps]).reshape(classes, 2, -1).to(DEVICE)
    x = torch.randn(batch, frames, 3, size, size, device=DEVICE)
    y = torch.randint(0, classes, (batch,), device=DEVICE)

    def step():
        opt.zero_grad(set_to_none=True)
        d(x, y, tokens).total.backward()
        opt.step()

    def teacher():
        d.teacher.encode_frames(x)
        d.teacher.encode_text(tokens.flatten(0, 1))

    timed(step)
    steps, teach = [], []
    for _ in range(reps):
        steps.append(timed(step))
        teach.append(timed(teacher))
    s, t = statistics.median(steps), statistics.median(teach)
    return {"model": model, "frames": frames, "batch": batch, "image_size": size, "classes": classes,
            "step_s": s, "clips_per_s": batch / s, "teacher_s": t, "teacher_share": t / s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--train-model", default="configs/models/tiny-vit.json")
    ap.add_argument("--train-size", type=int, default=64)
    ap.add_argument("--train-batch", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (cuda runs under bf16 autocast)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)

    env = environment()
    result = {
        "machine": {k: env[k] for k in ("cpu", "torch", "open_clip", "python", "gpus")},
        "threads": torch.get_num_threads(),
        "device": str(DEVICE),
        "forward": forward_ratio(args.model, args.frames, args.batch, args.reps, args.size),
        "train_step": train_step_share(args.train_model, args.frames, args.train_batch, args.reps, args.train_size),
    }
    f, s = result["forward"], result["train_step"]
    print(f"machine: {env['cpu']}, {', '.join(env['gpus']) or 'no GPU'}, torch {env['torch']}, "
          f"open_clip {env['open_clip']}, {result['threads']} threads, device {DEVICE}")
    print(f"forward {f['model']} T={f['frames']} B={f['batch']}: neighbors {f['neighbors_s'] * 1000:.0f} ms, "
          f"none {f['none_s'] * 1000:.0f} ms, overhead {f['overhead']:+.1%}")
    print(f"train step {s['model']} T={s['frames']} B={s['batch']} {s['image_size']}px: {s['step_s'] * 1000:.0f} ms "
          f"({s['clips_per_s']:.1f} clips/s), teacher {s['teacher_s'] * 1000:.0f} ms = {s['teacher_share']:.0%} of the step")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
