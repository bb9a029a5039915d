"""The `froster-edge` command: a thin typer layer over the library, one module per command group.

base (app, exit codes, `main`), options (shared flags), info, models, export, calibrate, train,
evaluate, runtime, search. Heavy imports (torch, open_clip) happen inside the commands, so `--help` and
`info` stay fast and the torch-free commands (run, bench, calibrate, labels --bundle) need no torch.

See docs/cli.md.
"""

from __future__ import annotations

# each module registers its commands; this order is the order of `froster-edge --help`
from . import calibrate, evaluate, export, info, models, runtime, search, train  # noqa: E402, F401, I001
from .base import EXIT_CODES, app, main

__all__ = ["EXIT_CODES", "app", "main"]
