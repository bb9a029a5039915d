"""`froster-edge info`: versions of the stack and the GPUs seen.

See docs/cli.md.
"""

from __future__ import annotations

from .base import command
from .options import JsonOut, readable, write_json


@command()
def info(json_out: JsonOut = None) -> None:
    """Versions of froster-edge and its stack, ONNX Runtime providers, OpenVINO devices and their
    optimisation capabilities (FP32, BF16, FP16, INT8: what `calibrate` gates), TensorRT, GPUs seen.

    Examples:
      froster-edge info
      froster-edge info --json -
    """
    from ..info import environment

    env = environment()
    out = readable(json_out)
    for key, value in env.items():
        if isinstance(value, list):
            value = ", ".join(value) if value else "none"
        print(f"{key:24s} {value}", file=out)
    write_json(json_out, env)
