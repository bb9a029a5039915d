"""Which torch device a command runs on: the one rule for `auto`, `cpu`, `cuda` and `cuda:N`.

See docs/cli.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import ConfigError, MissingCapability

if TYPE_CHECKING:
    import torch


def resolve_device(name: str, local_rank: int = 0, what: str = "--device") -> "torch.device":
    """`auto` is this process's GPU when CUDA is available, else the CPU; `cuda` without an index is
    GPU `local_rank` (one per process under torchrun). CUDA asked for where torch sees no GPU is a
    missing capability; a name torch does not know is bad input. `what` names the setting in errors."""
    import torch

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"{what} {name!r} is not a torch device (cpu, cuda, cuda:1, auto)") from e
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MissingCapability(f"{what} is {name!r} but torch sees no CUDA GPU on this machine")
        return device if device.index is not None else torch.device("cuda", local_rank)
    return device
