"""Reproducible, resumable batches for iteration-based training.

The global batch of iteration i is fixed by (seed, i) alone: epoch e = i // (N // B)
draws its permutation from a generator seeded with (seed, e), and the batch is the
(i mod N // B)-th slice of it (the last incomplete batch of an epoch is dropped).
Each sample's augmentation draws from torch's generator reseeded with
(seed, i, slot in the batch). So a run resumed at iteration k sees exactly the
batches an uninterrupted run sees after k, whatever the number of data workers,
and a distributed run sees the same global batches as a single process: rank r
takes slots [r * b, (r + 1) * b) with b = B / world size.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..distributed import SINGLE_PROCESS, DistInfo
from ..errors import UserError


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers (seed, epoch, iteration, ...)."""
    state = np.random.SeedSequence([p % 2**63 for p in parts]).generate_state(1, np.uint64)
    return int(state[0]) >> 1


class IterationBatches:
    """Yields, for each iteration in [start, stop), this rank's keys (iteration, slot, index)."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        dist: DistInfo = SINGLE_PROCESS,
    ) -> None:
        rank, world_size = dist.rank, dist.world_size
        if batch_size % world_size:
            raise UserError(
                f"train.batch_size: {batch_size} does not split evenly over {world_size} processes"
            )
        if num_samples < batch_size:
            raise UserError(
                f"train.batch_size: {batch_size} is more than the {num_samples} training images"
            )
        self.num_samples = num_samples
        self.batch_size = batch_size
        self.per_epoch = num_samples // batch_size
        self.seed = seed
        self.start, self.stop = start, stop
        self.per_rank = batch_size // world_size
        self.first_slot = rank * self.per_rank
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def global_batch(self, iteration: int) -> list[int]:
        """Dataset indices of the whole batch of `iteration`, over all ranks."""
        epoch, position = divmod(iteration, self.per_epoch)
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, epoch))
            self._epoch, self._order = epoch, torch.randperm(self.num_samples, generator=generator)
        begin = position * self.batch_size
        return self._order[begin : begin + self.batch_size].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        for iteration in range(self.start, self.stop):
            batch = self.global_batch(iteration)
            slots = range(self.first_slot, self.first_slot + self.per_rank)
            yield [(iteration, slot, batch[slot]) for slot in slots]

    def __len__(self) -> int:
        return self.stop - self.start


class SeededSamples(Dataset):
    """Wraps a training dataset so that sample (iteration, slot, index) has its own RNG seed.

    The transforms draw from the global generators; those are reseeded for the sample
    and restored afterwards, so loading data never shifts the training loop's RNG
    (dropout), whether it happens in the main process or in a worker.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int, int]):
        iteration, slot, index = key
        seed = derive_seed(self.seed, iteration, slot)
        # Only the CPU generator: data never draws on a GPU, and torch.manual_seed,
        # which also reseeds every device, costs 100 times more per sample.
        generator = torch.default_generator
        torch_state, py_state, np_state = (
            generator.get_state(),
            random.getstate(),
            np.random.get_state(),
        )
        try:
            generator.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            return self.dataset[index]
        finally:
            generator.set_state(torch_state)
            random.setstate(py_state)
            np.random.set_state(np_state)


def train_loader(
    dataset: Dataset, batches: IterationBatches, seed: int, num_workers: int, pin_memory: bool
) -> DataLoader:
    # The generator keeps the loader from drawing its base seed from the global RNG.
    return DataLoader(
        SeededSamples(dataset, seed),
        batch_sampler=batches,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )


def eval_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    pin_memory: bool,
    dist: DistInfo = SINGLE_PROCESS,
) -> DataLoader:
    """In order; under several processes each rank takes every world_size-th image."""
    indices: Sequence[int] = range(dist.rank, len(dataset), dist.world_size)  # type: ignore[arg-type]
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=list(indices),
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(0),
    )
