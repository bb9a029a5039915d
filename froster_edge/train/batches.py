"""The batch sampler of training: one global batch per step, split over processes and micro-batches.

Each epoch is a permutation drawn from (seed, epoch) alone, cut into global batches (the incomplete
last one dropped, as the reference does); rank r takes every world_size-th index and yields it in
`accumulation` micro-batches. So a step's global batch is the same whatever the process count, and
the sampler's whole state is (epoch, step): `start_step` resumes mid-epoch without replaying it.

See docs/training.md.
"""

from __future__ import annotations

from typing import Iterator

import torch

from ..errors import ConfigError


class ResumableBatchSampler:
    def __init__(self, num_items: int, batch_size: int, micro_batch_size: int, *, rank: int = 0,
                 world_size: int = 1, seed: int = 0, shuffle: bool = True):
        if batch_size % world_size:
            raise ConfigError(f"train.batch_size {batch_size} is not a multiple of the {world_size} processes")
        per_rank = batch_size // world_size
        if per_rank % micro_batch_size:
            raise ConfigError(
                f"train.micro_batch_size {micro_batch_size} does not divide the {per_rank} clips per process and step "
                f"(batch_size {batch_size} / {world_size} processes)"
            )
        if num_items < batch_size:
            raise ConfigError(f"the training list has {num_items} videos, fewer than one global batch ({batch_size})")
        self.num_items = num_items
        self.batch_size = batch_size
        self.micro_batch_size = micro_batch_size
        self.accumulation = per_rank // micro_batch_size
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.start_step = 0

    @property
    def steps_per_epoch(self) -> int:
        return self.num_items // self.batch_size

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        """Select the epoch's permutation and the first step to yield (for a resumed epoch)."""
        self.epoch = epoch
        self.start_step = start_step

    def permutation(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=g)

    def global_batch(self, epoch: int, step: int) -> list[int]:
        """The dataset indices of step `step` of `epoch`, over all processes."""
        start = step * self.batch_size
        return self.permutation(epoch)[start:start + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        perm = self.permutation(self.epoch)
        for step in range(self.start_step, self.steps_per_epoch):
            mine = perm[step * self.batch_size:(step + 1) * self.batch_size][self.rank::self.world_size].tolist()
            for i in range(0, len(mine), self.micro_batch_size):
                yield mine[i:i + self.micro_batch_size]

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulation
