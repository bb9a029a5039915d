"""The `froster-edge` command: a thin typer layer over the library.

Each command checks its arguments, calls the library, and prints. `main` is the one place that
turns the project's exceptions into a single line and an exit code (1 bad input, 2 a missing
capability); FROSTER_EDGE_DEBUG=1 keeps tracebacks. Heavy imports (torch, open_clip) happen
inside the commands so `--help` and `info` stay fast.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .errors import FrosterError

app = typer.Typer(
    name="froster-edge",
    help="Open-vocabulary video action recognition: FROSTER training, ONNX/TensorRT export, real-time runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False) -> None:
    """Versions of froster-edge and its stack, ONNX Runtime providers, TensorRT, GPUs seen.

    Example: froster-edge info --json
    """
    from .info import environment

    env = environment()
    if as_json:
        print(json.dumps(env, indent=2))
        return
    for key, value in env.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "none"
        print(f"{key:24s} {value}")


@app.command("import-froster")
def import_froster_cmd(
    ckpt: Annotated[Path, typer.Argument(help="The official FROSTER release checkpoint (.pyth/.pt).")],
    out: Annotated[Path, typer.Option("-o", "--out", help="Student directory to write.")],
    frames: Annotated[Optional[int], typer.Option(help="Frames per clip; default: the checkpoint's DATA.NUM_FRAMES, else 8.", min=1)] = None,
) -> None:
    """Convert an official FROSTER checkpoint into a student directory (safetensors + config).

    Reads the file with weights_only=True (no code is unpickled), infers the ViT from the tensor
    shapes, keeps fp32, and also writes the projectors and the frozen teacher when present.

    Example: froster-edge import-froster froster_k400.pyth -o students/froster-b16
    """
    from .model.froster_import import import_froster
    from .model.checkpoint import read_student_config

    out_dir = import_froster(ckpt, out, num_frames=frames)
    cfg = read_student_config(out_dir)
    s = cfg["student"]
    print(f"wrote {out_dir}: {s['model_name']} T={s['num_frames']} {s['image_size']}px, files: {', '.join(cfg['weights'])}")


@app.command()
def predict(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    classes: Annotated[Path, typer.Option(help="Class names, one a line, or JSON {\"0\": \"Name: description\"}.")],
    student: Annotated[Optional[Path], typer.Option(help="A student directory (from train, average or import-froster).")] = None,
    model: Annotated[str, typer.Option(help="open_clip model name or model-config JSON, when no --student.")] = "ViT-B-16",
    pretrained: Annotated[str, typer.Option(help="open_clip tag (openai) or a local checkpoint file, when no --student.")] = "openai",
    frames: Annotated[int, typer.Option(help="Frames per clip, when no --student.", min=1)] = 8,
    top_k: Annotated[int, typer.Option("--top-k", min=1)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify one video file zero-shot against class texts (one view, 29-prompt ensemble).

    Examples:
      froster-edge predict examples/clips/stgcn_clean_and_jerk.mp4 --classes examples/clips/classes.txt
      froster-edge predict clip.mp4 --classes k400.json --student students/froster-b16
      froster-edge predict clip.mp4 --classes names.txt --pretrained ~/weights/ViT-B-16.bin
    """
    from .config import StudentConfig
    from .model.checkpoint import load_student
    from .model.factory import create_student
    from .predict import predict_video
    from .prompts import read_class_texts

    class_texts = read_class_texts(classes)
    if student is not None:
        net = load_student(student)
    else:
        net = create_student(StudentConfig(model_name=model, pretrained=pretrained, num_frames=frames))
    preds = predict_video(net, video, class_texts, top_k)
    if as_json:
        print(json.dumps({"video": str(video), "top": [p.__dict__ for p in preds]}))
        return
    print(f"{video.name}:")
    for p in preds:
        print(f"  {p.score:6.1%}  {p.label}")


def main() -> None:
    """Console entry point: one line and an exit code for every expected failure."""
    debug = os.environ.get("FROSTER_EDGE_DEBUG") == "1"
    try:
        app()  # typer reports usage errors itself (exit 2) and raises everything else here
    except FrosterError as e:
        if debug:
            raise
        print(f"froster-edge: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("froster-edge: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as e:  # a bug: say so in one line unless debugging
        if debug:
            raise
        print(f"froster-edge: internal error: {type(e).__name__}: {e} (set FROSTER_EDGE_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
