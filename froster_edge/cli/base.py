"""The typer app every command module registers on, the exit-code policy, and `main`.

Exit codes, the same for every command: 0 done; 1 bad input, a bad flag combination or a failed
step (one line on stderr); 2 a usage error from the parser (click's message); 3 a missing
capability (GPU, tensorrt, display, optional package); 130 interrupted. `main` is the one place
that turns the project's exceptions into one line and their exit code; FROSTER_EDGE_DEBUG=1 keeps
tracebacks.

See docs/cli.md.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable

import typer

from ..errors import FrosterError, MissingCapability
from ..logs import install_cli_handler

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_MISSING = MissingCapability.exit_code
EXIT_CODES = (f"Exit codes: {EXIT_OK} done; {EXIT_BAD_INPUT} bad input, a bad flag combination or a failed step "
              f"(one line on stderr); {EXIT_USAGE} usage error (unknown option or choice); {EXIT_MISSING} missing "
              f"capability (no GPU, tensorrt, display or optional package); {EXIT_INTERRUPTED} interrupted.")

app = typer.Typer(
    name="froster-edge",
    help="Open-vocabulary video action recognition: FROSTER training, ONNX/TensorRT export, real-time runtime.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def command(name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """`app.command` with the exit codes as the --help epilog."""
    return app.command(name, epilog=EXIT_CODES)


def main() -> None:
    """Console entry point: one line and an exit code for every expected failure."""
    debug = os.environ.get("FROSTER_EDGE_DEBUG") == "1"
    install_cli_handler()
    try:
        app()  # typer reports usage errors itself (exit 2) and raises everything else here
    except FrosterError as e:
        if debug:
            raise
        print(f"froster-edge: error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("froster-edge: interrupted", file=sys.stderr)
        sys.exit(EXIT_INTERRUPTED)
    except Exception as e:  # a bug: say so in one line unless debugging
        if debug:
            raise
        print(f"froster-edge: internal error: {type(e).__name__}: {e} (set FROSTER_EDGE_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
