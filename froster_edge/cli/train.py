"""`froster-edge train` and `average`: distillation runs and their weight average.

See docs/cli.md.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import ConfigError
from .base import command
from .options import out_option


@command("train")
def train_cmd(
    config: Annotated[Path, typer.Argument(help="A training recipe (YAML), e.g. configs/tiny.yaml or configs/train/*.yaml.")],
    overrides: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE override of a recipe option, repeatable: --set optim.lr=1e-5.")] = None,
    out: Annotated[Optional[Path], out_option("Run directory; default runs/<recipe name>.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its newest complete checkpoint.")] = False,
) -> None:
    """Distil a student from videos with FROSTER's recipe; writes checkpoints and OUT/student.

    Multi-GPU: the same command under torchrun, one process per GPU (train.batch_size is global).

    Paths in the YAML are relative to the YAML file; --set paths to the current directory.

    Examples:
      froster-edge train configs/tiny.yaml
      froster-edge train configs/train/b2n_hmdb51_vitb16.yaml --set data.root=/data/hmdb51 --set data.classes=train_rephrased.json
        --set data.train_list=fs_base_s1_train.txt   (B2N: the 16-shot list of split 1)
      torchrun --nproc_per_node 8 -m froster_edge.cli train configs/train/k400_vitb16.yaml --set data.root=/data/k400
        --set data.train_list=k400_train.txt --set data.classes=k400_rephrased_classes.json --out runs/k400
      froster-edge train configs/train/k400_vitb16.yaml --out runs/k400 --resume
    """
    from ..train.config import load_recipe
    from ..train.loop import default_out_dir, train

    recipe = load_recipe(config, overrides or [])
    student_dir = train(recipe, out or default_out_dir(config), resume=resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"student: {student_dir}")


@command("average")
def average_cmd(
    ckpts: Annotated[list[Path], typer.Argument(help="Student directories to average, or one run directory with --epochs.")],
    out: Annotated[Path, out_option("Student directory to write.")],
    epochs: Annotated[Optional[str], typer.Option(help="START..END (or START..) epochs of the run directory given, 1-based.")] = None,
) -> None:
    """Uniform weight average of student checkpoints (FROSTER averages epochs 2..last).

    Examples:
      froster-edge average runs/k400/checkpoints/epoch_002 runs/k400/checkpoints/epoch_003 -o students/avg
      froster-edge average runs/k400 --epochs 2..22 -o students/k400-avg
    """
    from ..train.average import average_students, epoch_dirs, parse_epoch_range

    if epochs is not None:
        if len(ckpts) != 1:
            raise ConfigError("--epochs takes exactly one run directory")
        dirs = epoch_dirs(ckpts[0], *parse_epoch_range(epochs))
    else:
        dirs = ckpts
    average_students(dirs, out)
    print(f"wrote {out}: the average of {len(dirs)} checkpoints")
