"""Logging: the library logs through `logging.getLogger(__name__)`; the CLI installs one handler.

Library code never prints progress or warnings itself and takes no logger callbacks; a Python
caller configures `logging` as it likes. `install_cli_handler` writes plain lines for the batch
commands, UTC stamps with milliseconds for `run`, whose log is a service's.

See docs/cli.md.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator

ROOT = "froster_edge"


class _StampedFormatter(logging.Formatter):
    """`2026-01-31T12:00:00.123Z froster-edge: message`, in UTC."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        return f"{stamp} froster-edge: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to the `sys.stderr` of the moment, so a live progress bar that redirects stderr
    prints the line above itself instead of through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def install_cli_handler(stamped: bool = False, indent: str = "") -> logging.Handler:
    """Route the library's INFO and above to stderr in the CLI's format; replaces an earlier one."""
    logger = logging.getLogger(ROOT)
    for old in [h for h in logger.handlers if getattr(h, "_froster_cli", False)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    handler._froster_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(_StampedFormatter() if stamped else logging.Formatter(indent + "%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # not also through the root logger: a library that calls logging.basicConfig (onnxruntime's
    # quantization does, on import) would print each line twice
    logger.propagate = False
    return handler


@contextlib.contextmanager
def quiet_logger(name: str | None = None, level: int = logging.ERROR) -> Iterator[None]:
    """Raise logger `name` (the root logger when None) to `level` for the duration of the block."""
    logger = logging.getLogger(name)
    saved = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(saved)
