"""`froster-edge import-froster` and `predict`: students in, one video classified.

See docs/cli.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .base import command
from .options import DEFAULT_MODEL, DEFAULT_PRETRAINED, ActivationOption, Classes, Frames, JsonOut, Model, Pretrained, Student, out_option, readable, write_json


@command("import-froster")
def import_froster_cmd(
    ckpt: Annotated[Path, typer.Argument(help="The official FROSTER release checkpoint (.pyth/.pt).")],
    out: Annotated[Path, out_option("Student directory to write.")],
    frames: Frames = None,
) -> None:
    """Convert an official FROSTER checkpoint into a student directory (safetensors + config).

    Reads the file with weights_only=True (no code is unpickled), infers the ViT from the tensor
    shapes, keeps fp32, and also writes the projectors and the frozen teacher when present.
    --frames defaults to the checkpoint's DATA.NUM_FRAMES, else 8.

    Example: froster-edge import-froster froster_k400.pyth -o students/froster-b16
    """
    from ..model.checkpoint import read_student_config
    from ..model.froster_import import import_froster

    out_dir = import_froster(ckpt, out, num_frames=frames)
    cfg = read_student_config(out_dir)
    s = cfg["student"]
    print(f"wrote {out_dir}: {s['model_name']} T={s['num_frames']} {s['image_size']}px, files: {', '.join(cfg['weights'])}")


@command()
def predict(
    video: Annotated[Path, typer.Argument(help="A video file.")],
    classes: Classes,
    student: Student = None,
    model: Model = DEFAULT_MODEL,
    pretrained: Pretrained = DEFAULT_PRETRAINED,
    activation: ActivationOption = "auto",
    frames: Frames = None,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="Classes reported.")] = 5,
    json_out: JsonOut = None,
) -> None:
    """Classify one video file zero-shot against class texts (one view, 29-prompt ensemble).

    Examples:
      froster-edge predict examples/clips/stgcn_clean_and_jerk.mp4 --classes examples/clips/classes.txt
      froster-edge predict clip.mp4 --classes k400.json --student students/froster-b16 --json -
      froster-edge predict clip.mp4 --classes names.txt --pretrained ~/weights/ViT-B-16.bin
    """
    from ..data.lists import read_classes
    from ..model.factory import load_model
    from ..predict import predict_video

    class_texts = read_classes(classes)
    net = load_model(student, model, pretrained, frames, activation)
    preds = predict_video(net, video, class_texts, top_k)
    out = readable(json_out)
    print(f"{video.name}:", file=out)
    for p in preds:
        print(f"  {p.score:6.1%}  {p.label}", file=out)
    write_json(json_out, {"video": str(video), "top": [p.__dict__ for p in preds]})


def model_source(student: Optional[Path], model: str, pretrained: str) -> dict:
    """Where a model came from, as the bundle manifest records it."""
    if student is not None:
        return {"student": str(student)}
    return {"model": model, "pretrained": pretrained}
