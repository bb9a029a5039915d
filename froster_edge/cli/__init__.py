"""The `froster-edge` command: a thin typer layer over the library, one module per command group.

base (the typer app, exit codes, `main`), options (flags shared by several commands: one flag, one
type, one meaning), info, models (import-froster, predict), export (export, labels), calibrate,
train (train, average), evaluate (eval), runtime (run, bench), search (search). Heavy imports (torch, open_clip)
happen inside the commands, so `--help` and `info` stay fast and the torch-free commands (run,
bench, calibrate, labels --bundle) run without torch.
"""

from __future__ import annotations

from .base import EXIT_CODES, app, main

# each module registers its commands; this order is the order of `froster-edge --help`
from . import info, models, export, calibrate, train, evaluate, runtime, search  # noqa: E402, F401, I001

__all__ = ["EXIT_CODES", "app", "main"]
