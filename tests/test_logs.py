"""The CLI's one log handler: plain or stamped lines on stderr, each line once."""

from __future__ import annotations

import re
import subprocess
import sys

SCRIPT = """
import logging, sys
import onnxruntime.quantization.matmul_nbits_quantizer  # calls logging.basicConfig(level=INFO) on import
from froster_edge.logs import install_cli_handler
install_cli_handler(stamped=sys.argv[1] == "stamped", indent="  ")
logging.getLogger("froster_edge.runtime.pipeline").info("hello from the library")
"""


def _stderr(mode: str) -> list[str]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, timeout=120, check=True)
    return [line for line in done.stderr.splitlines() if "hello from the library" in line]


def test_a_library_line_is_printed_once_even_after_a_basicconfig():
    assert _stderr("plain") == ["  hello from the library"]


def test_run_lines_are_stamped_in_utc_with_milliseconds():
    (line,) = _stderr("stamped")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z froster-edge: hello from the library", line), line
