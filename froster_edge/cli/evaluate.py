"""`froster-edge eval`: top-1/top-5 on video lists and the paper's protocols.

See docs/cli.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .base import command
from .options import DEFAULT_MODEL, DEFAULT_PRETRAINED, ActivationOption, Frames, JsonOut, Model, OptionalClasses, Pretrained, Student, readable, write_json


@command("eval")
def eval_cmd(
    protocol: Annotated[Optional[Path], typer.Option(help="A protocol config (configs/eval/*.yaml): base-to-novel or cross-dataset splits.")] = None,
    data: Annotated[Optional[Path], typer.Option(help="A video list: 'path label' or 'path,label' lines (instead of --protocol).")] = None,
    classes: OptionalClasses = None,
    check_classes: Annotated[Optional[Path], typer.Option(
        "--check-classes", help="A plain label file to check the count and order of --classes against (was --labels).")] = None,
    root: Annotated[Optional[Path], typer.Option(
        help="Folder the list's video paths are relative to (default: the list's folder, or the config's root).")] = None,
    path: Annotated[Optional[list[str]], typer.Option("--path", help="NAME=DIR: where a protocol config's {NAME} folder is (repeatable).")] = None,
    split: Annotated[Optional[list[str]], typer.Option(
        "--split", help="Score only this split of the protocol (a base-to-novel training seed: s1, s2, s3); repeatable.")] = None,
    student: Student = None,
    model: Model = DEFAULT_MODEL,
    pretrained: Pretrained = DEFAULT_PRETRAINED,
    activation: ActivationOption = "auto",
    frames: Frames = None,
    views: Annotated[Optional[int], typer.Option(help="Temporal views per video, logits summed (default 3).", min=1)] = None,
    batch_size: Annotated[int, typer.Option(help="Videos per forward pass (results do not depend on it).", min=1)] = 8,
    workers: Annotated[int, typer.Option(help="Decoding worker processes.", min=0)] = 2,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "auto",
    json_out: JsonOut = None,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Progress bar on stderr.")] = True,
) -> None:
    """Score a student on video lists: top-1/top-5, 3 views x 1 centre crop, the paper's protocols.

    With --protocol, '{split}' in --student becomes each split's name: a base-to-novel protocol
    scores its three training seeds' students (s1-s3) and prints each seed's figures and their
    mean. Each accuracy is shown as froster-edge's (over the decoded videos) and the reference's
    (ref: an undecodable video counted wrong), with the skipped count. --json writes the report
    (per split, per class, per video, failures).

    Examples:
      froster-edge eval --student students/mine --data lists/val.txt --root /data/ucf101 --classes ucf101.json --json r.json
      froster-edge eval --protocol configs/eval/k400_to_ucf101.yaml --student students/froster-b16 \\
          --root /data/ucf101 --path froster=/data/froster_label_db
      froster-edge eval --protocol configs/eval/hmdb51_b2n.yaml --student 'runs/b2n_hmdb51_{split}/student' \\
          --root /data/hmdb51 --path froster=/data/froster_label_db
      froster-edge eval --protocol configs/eval/k400_b2n.yaml --student 'runs/b2n_k400_{split}/student' \\
          --root /data/k400 --path froster=/data/froster_label_db --path vifi=/data/vificlip_splits
    """
    from rich.console import Console

    from ..evaluation.command import EvalRequest, run_eval

    req = EvalRequest(protocol=protocol, data=data, classes=classes, check_classes=check_classes, root=root, paths=path or [], splits=split or [],
                      student=None if student is None else str(student), model=model, pretrained=pretrained, activation=activation,
                      frames=frames, views=views, batch_size=batch_size, workers=workers, device=device,
                      json_out=None if json_out is None or str(json_out) == "-" else json_out, progress=progress)
    report = run_eval(req)
    Console(width=120, file=readable(json_out)).print(report.table())
    failed = report.failed
    if failed:
        print(f"{len(failed)} video(s) could not be scored:", file=sys.stderr)
        for line in failed[:20]:
            print(f"  {line}", file=sys.stderr)
        if len(failed) > 20:
            print(f"  ... and {len(failed) - 20} more" + (f", all in {json_out}" if json_out else ""), file=sys.stderr)
    if json_out is not None and str(json_out) == "-":
        write_json(json_out, report.to_dict())
    elif json_out is not None:
        print(f"wrote {json_out}")  # run_eval wrote it
    report.require_scored()
