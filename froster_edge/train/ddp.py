"""Processes and devices: torchrun's environment, the process group, and the few collectives used.

A plain `froster-edge train` is a world of one and creates no process group; under torchrun, NCCL
joins GPU processes (one GPU each, cuda:LOCAL_RANK), gloo CPU ones.

See docs/training.md.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

from ..device import resolve_device
from ..errors import ConfigError, MissingCapability

COLLECTIVE_TIMEOUT = timedelta(minutes=60)


@dataclass(frozen=True)
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as e:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from e


def setup(device: str) -> Dist:
    """Read torchrun's environment, pick this process's device, join the process group if > 1 process."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device, local_rank, "train.device")
    if dev.type == "cuda":
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise MissingCapability(f"process {rank} wants {dev} but this machine has {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        # rank 0 evaluates and writes checkpoints while the others wait: allow it an hour
        if dev.type == "cuda":
            # device_id (torch >= 2.3) binds the communicator to this GPU up front
            bind = {"device_id": dev} if "device_id" in inspect.signature(dist.init_process_group).parameters else {}
            dist.init_process_group(backend="nccl", timeout=COLLECTIVE_TIMEOUT, **bind)
        else:
            dist.init_process_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
    return Dist(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(d: Dist) -> None:
    if d.distributed:
        dist.barrier()


def mean_over_processes(values: torch.Tensor, d: Dist) -> torch.Tensor:
    """The mean of a tensor over all processes (the tensor itself in a world of one)."""
    if not d.distributed:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / d.world_size


def gather_objects(obj: Any, d: Dist) -> list[Any]:
    """Every process's `obj`, in rank order (internal: objects travel pickled between our own processes)."""
    if not d.distributed:
        return [obj]
    out: list[Any] = [None] * d.world_size
    dist.all_gather_object(out, obj)
    return out
