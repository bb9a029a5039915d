"""Options shared by several commands: one flag, one type, one meaning, one help text everywhere.

--json FILE writes the command's result as JSON to FILE (atomically) beside the readable lines on
stdout; `--json -` prints the JSON on stdout and sends the readable lines to stderr.

See docs/cli.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional, TextIO

import typer

from ..config import StudentConfig

_STUDENT = StudentConfig()
DEFAULT_MODEL = _STUDENT.model_name
DEFAULT_PRETRAINED = _STUDENT.pretrained or "openai"

CLASSES_HELP = "Class texts: names one a line, JSON {\"0\": \"Name: description\"}, or an id,name CSV."

Student = Annotated[Optional[Path], typer.Option(
    "--student", help="A student directory (from train, average or import-froster).")]
Model = Annotated[str, typer.Option("--model", help="open_clip model name or model-config JSON, when no --student.")]
Pretrained = Annotated[str, typer.Option(
    "--pretrained", help="open_clip tag (openai) or a local checkpoint file, when no --student.")]
ActivationOption = Annotated[str, typer.Option(
    "--activation", help="The MLP activation of --pretrained weights: auto (from the model name, tag or the file), "
    "quick_gelu (OpenAI CLIP) or gelu; needed for a local file that nothing else speaks for.")]
Frames = Annotated[Optional[int], typer.Option(
    "--frames", min=1, help="Frames per clip (T); default: the student's, else 8.")]
VIDEOS_HELP = ("Videos: files, folders of videos, or list files of `path label` lines, label optional (paths relative to "
               "the list's folder, or to --root where the command has one); repeatable.")

Classes = Annotated[Path, typer.Option("--classes", help=CLASSES_HELP)]
OptionalClasses = Annotated[Optional[Path], typer.Option("--classes", help=CLASSES_HELP)]


def videos_option(purpose: str, name: str = "--videos") -> Any:
    """A repeatable video option (--videos, --held-out), read by `froster_edge.data.lists.gather_videos`
    in every command; `purpose` says what the videos are for."""
    return typer.Option(name, metavar="PATH", help=f"{purpose} {VIDEOS_HELP}")


def _json_target(value: Optional[Path]) -> Optional[Path]:
    if value is not None and str(value).startswith("-") and str(value) != "-":
        raise typer.BadParameter(f"takes a file to write, or - for stdout, not {str(value)!r}")
    if value is not None and str(value) != "-":  # a folder or an unwritable place is said before any work
        from ..io import Output, check_outputs

        check_outputs([Output(value, "--json")])
    return value


JsonOut = Annotated[Optional[Path], typer.Option(
    "--json", metavar="FILE", callback=_json_target,
    help="Also write the result as JSON to FILE; '-' prints only the JSON on stdout (readable lines go to stderr).")]


def out_option(help: str) -> Any:
    """-o/--out, the one output flag of every command that writes something (its help says what)."""
    return typer.Option("-o", "--out", help=help)


def readable(json_out: Optional[Path]) -> TextIO:
    """Where the readable lines go: stdout, unless `--json -` claimed it."""
    return sys.stderr if json_out is not None and str(json_out) == "-" else sys.stdout


def write_json(json_out: Optional[Path], data: Any) -> None:
    """The result as JSON to the --json target: a file, written atomically, or stdout for '-'."""
    if json_out is None:
        return
    if str(json_out) == "-":
        print(json.dumps(data, indent=2))
        return
    from ..io import atomic_write_json

    atomic_write_json(json_out, data)
