"""Runtime speed, as ratios in one run: `froster-edge bench` on a bundle of a given architecture.

Without --bundle it exports one first: a random-weights student of --model (speed does not depend
on the weights), saved beside the bundle so the torch backend can rebuild it. Then, in one run,
for each backend: encoder latency and throughput, the full pipeline's decisions/s against the
backend alone on the same clips, and capture-to-decision latency at real-time pace against the
encoder's latency (see runtime/bench.py). Usage:
    python benchmarks/bench_runtime.py [--model ViT-B-32] [--frames 8] [--streams 1] [--backend ort-cpu]...
        [--bundle DIR] [--keep DIR] [--hop 2] [--reps 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "examples" / "clips" / "stgcn_clean_and_jerk.mp4"


def export_random(model: str, frames: int, streams: int, out: Path) -> Path:
    import torch

    from froster_edge.config import StudentConfig
    from froster_edge.export.bundle import export_bundle
    from froster_edge.export.options import ExportOptions
    from froster_edge.model.checkpoint import save_student
    from froster_edge.model.factory import create_student
    from froster_edge.prompts import read_class_texts

    torch.manual_seed(0)
    student = create_student(StudentConfig(model_name=model, pretrained=None, num_frames=frames)).eval()
    save_student(student, out / "student")
    t = time.perf_counter()
    export_bundle(student, out / "bundle", read_class_texts(ROOT / "examples" / "clips" / "classes.txt"), [CLIP],
                  ExportOptions(streams=streams, max_parity_clips=1), source={"student": str(out / "student")})
    print(f"exported a random {model} T={frames} S={streams} bundle in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out / "bundle"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ViT-B-32")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--streams", type=int, default=1)
    p.add_argument("--bundle", type=Path, help="measure this bundle instead of exporting one")
    p.add_argument("--keep", type=Path, help="export into this folder (kept) instead of a temporary one")
    p.add_argument("--backend", action="append", default=[], help="repeatable; default: every available one")
    p.add_argument("--clip", type=Path, default=CLIP)
    p.add_argument("--hop", type=int, default=2)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-realtime-check", action="store_true")
    p.add_argument("--json", type=Path)
    args = p.parse_args()

    from froster_edge.io import atomic_write_json
    from froster_edge.logs import install_cli_handler
    from froster_edge.runtime.bench import BenchOptions, bench, table

    options = BenchOptions(clip=args.clip, backends=args.backend, reps=args.reps, hop=args.hop,
                           realtime_check=not args.no_realtime_check)
    install_cli_handler(indent="  ")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            bundle = export_random(args.model, args.frames, args.streams, folder)
        result = bench(bundle, options)
    result["command"] = " ".join(["python", "benchmarks/bench_runtime.py", *sys.argv[1:]])
    print(table(result))
    if args.json:
        atomic_write_json(args.json, result)


if __name__ == "__main__":
    main()
