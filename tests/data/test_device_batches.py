"""Batches held on the device, and prefetched ones, are the DataLoader's batches."""

from __future__ import annotations

import pytest
import torch

from attnbench.data import sampling
from attnbench.data.device_batches import (
    _DEVICE_COPY,
    ResidentBatches,
    device_copy,
    prefetched,
    resident_fits,
)
from attnbench.data.probes import ProbeTask
from attnbench.data.synthetic import SyntheticShapes
from attnbench.data.transforms import SegTransform
from attnbench.distributed import DistInfo


def _dataset() -> SyntheticShapes:
    return SyntheticShapes("train", size=12, image_size=16, transform=SegTransform(flip=True))


def _probe() -> ProbeTask:
    return ProbeTask("train", size=12, image_size=16, transform=SegTransform(flip=True))


@pytest.mark.parametrize("make", [_dataset, _probe], ids=["synthetic", "probe"])
def test_resident_batches_equal_the_loader_bit_for_bit(make) -> None:
    dataset = make()
    cpu = torch.device("cpu")

    def batches() -> sampling.IterationBatches:
        return sampling.IterationBatches(len(dataset), 4, 7, 2, 9, DistInfo(rank=1, world_size=2))

    loader = sampling.train_loader(dataset, batches(), 7, 0, False)
    resident = ResidentBatches(dataset, batches(), 7, cpu)
    flipped = 0
    pairs = list(zip(loader, resident, strict=True))
    assert len(pairs) == 7
    for (images, labels), (r_images, r_labels) in pairs:
        assert torch.equal(images, r_images) and torch.equal(labels, r_labels)
        assert r_labels.dtype == torch.long and r_images.shape == (2, 3, 16, 16)
        flipped += int(not torch.equal(images, images.flip(-1)))
    assert flipped > 0  # the flips were drawn, not skipped


def test_prefetched_moves_and_formats_every_batch() -> None:
    batch = (torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long))
    out = list(prefetched([batch, batch], torch.device("cpu"), channels_last=True))
    assert len(out) == 2
    assert out[0][0].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(out[1][0], batch[0]) and torch.equal(out[1][1], batch[1])


def test_only_a_flip_only_generated_set_is_held_on_the_device() -> None:
    cpu = torch.device("cpu")
    assert resident_fits(_dataset(), cpu) and resident_fits(_probe(), cpu)
    cropped = SyntheticShapes("train", size=4, image_size=16, transform=SegTransform(crop_size=8))
    assert not resident_fits(cropped, cpu)
    assert not resident_fits([(torch.zeros(3, 4, 4), torch.zeros(4, 4))], cpu)


def test_the_device_copy_is_made_once_for_the_same_images() -> None:
    cpu, flip = torch.device("cpu"), SegTransform(flip=True)
    first = device_copy(_probe(), flip, cpu)
    again = device_copy(_probe(), flip, cpu)  # a new data set object, the same images
    assert again[0] is first[0] and again[1] is first[1]
    other = ProbeTask("train", size=12, image_size=16, data_seed=1, transform=flip)
    changed = device_copy(other, flip, cpu)
    assert changed[0] is not first[0] and not torch.equal(changed[0], first[0])
    assert device_copy(_probe(), flip, cpu)[0] is not first[0]  # one copy is kept, not two
    assert torch.equal(device_copy(_probe(), flip, cpu)[0], first[0])


def test_a_copy_no_run_uses_is_released() -> None:
    cpu, flip = torch.device("cpu"), SegTransform(flip=True)
    device_copy(_probe(), flip, cpu)
    assert resident_fits(_probe(), cpu) and len(_DEVICE_COPY) == 1  # the same set: kept
    other = ProbeTask("train", size=12, image_size=16, data_seed=1, transform=flip)
    assert resident_fits(other, cpu)
    assert not _DEVICE_COPY  # another set is checked: the old copy goes
