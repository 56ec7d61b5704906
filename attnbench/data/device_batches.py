"""Training batches that arrive on the device ready to use, without stalling the step.

Two ways, one result: this rank's batch of each iteration as `sampling.train_loader`
gives it (same images, same flips), on `device`, channels_last when asked.

- `ResidentBatches`: the synthetic task, whose training images are all rendered in
  memory, is copied to the device once, normalised; each batch is then a gather and a
  flip on the device. On a CPU too: the loader's per-image transform and collate cost
  about a fifth of a probe step there. The flips are the ones SegTransform draws: one
  torch.rand(()) < 0.5 per sample, from the generator seeded with (seed, iteration,
  slot) (see sampling.py).
- `prefetched`: any loader; pinned CPU batches are copied on a side CUDA stream one
  batch ahead, so the copy of batch i + 1 overlaps the step on batch i.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from . import sampling
from .rendered import RenderedImages
from .transforms import SegTransform

Batch = tuple[torch.Tensor, torch.Tensor]  # images (B, 3, H, W), labels (B, H, W)

# Share of the device's free memory the resident copy may take.
RESIDENT_FRACTION = 0.25
# The most a copy may take in host memory when the device is the CPU. The probes' sets
# (4096 images of 96 px, 490 MB) fit; probes_gpu.yaml's 256 px set (3.5 GB) goes through
# the loader, since the copy would sit beside the render cache in every --jobs process.
RESIDENT_CPU_BYTES = 1 << 30


def resident_fits(dataset: object, device: torch.device) -> bool:
    """Whether `dataset` can live on `device`: a generated set (the synthetic task, a probe)
    flipped only, small enough."""
    if not isinstance(dataset, RenderedImages):
        return False
    t = dataset.transform
    if not isinstance(t, SegTransform) or t.scale_range is not None or t.crop_size is not None:
        return False
    if _copy_key(dataset, t, device) in _DEVICE_COPY:
        return True  # held already, in memory that the free figure no longer counts
    release_device_copy()  # another set's copy: its memory is free for this one
    side = dataset.image_size
    size = len(dataset) * side * side * (3 * 4 + 1)  # float32 RGB + uint8 label
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return size <= RESIDENT_FRACTION * free
    return size <= RESIDENT_CPU_BYTES


# The last data set copied to a device, kept for the process's next run. A `--jobs` child
# trains run after run on the same images; at probes_gpu.yaml's size (4096 images of
# 256 px, most of them past the render cache) drawing them again cost about 13 s a run.
# One copy at a time, because resident_fits allowed for one.
_DEVICE_COPY: dict[tuple, Batch] = {}


def release_device_copy() -> None:
    """Drop the kept copy (a run that does not use it), and give the memory that PyTorch
    caches back to the device, for other processes (`--jobs` siblings) to use."""
    _DEVICE_COPY.clear()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def device_copy(dataset: RenderedImages, transform: SegTransform, device: torch.device) -> Batch:
    """Every image of `dataset`, normalised, (N, 3, H, W), and its labels, uint8
    (N, H, W), on `device`; the same tensors as the last call's for the same images.
    Read them, never write into them."""
    key = _copy_key(dataset, transform, device)
    if key not in _DEVICE_COPY:
        release_device_copy()
        images, labels = zip(*(dataset.raw_item(i) for i in range(len(dataset))), strict=True)
        mean, std = transform.mean.to(device), transform.std.to(device)
        # In place: `(x - mean) / std` held three copies at once, 9 GiB at probes_gpu's size.
        normalised = torch.stack(images).to(device).sub_(mean).div_(std)  # (N, 3, H, W)
        _DEVICE_COPY[key] = (normalised, torch.stack(labels).to(device))  # labels (N, H, W)
    return _DEVICE_COPY[key]


def _copy_key(dataset: object, transform: SegTransform, device: torch.device) -> tuple:
    mean, std = transform.mean.flatten().tolist(), transform.std.flatten().tolist()
    return (dataset._render_key, len(dataset), str(device), tuple(mean), tuple(std))


class ResidentBatches:
    """The batches of `batches` (an IterationBatches) from a device-resident copy."""

    def __init__(
        self,
        dataset: RenderedImages,
        batches: sampling.IterationBatches,
        seed: int,
        device: torch.device,
        channels_last: bool = False,
    ) -> None:
        transform = dataset.transform
        assert isinstance(transform, SegTransform)
        self.images, self.labels = device_copy(dataset, transform, device)
        self.flip = transform.flip
        self.batches, self.seed, self.device = batches, seed, device
        self.channels_last = channels_last

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[Batch]:
        for keys in self.batches:
            index = torch.tensor([k[2] for k in keys])
            flips = torch.tensor([self._flips(it, slot) for it, slot, _ in keys])
            index, flips = index.to(self.device), flips.to(self.device)
            images = self.images.index_select(0, index)  # (B, 3, H, W)
            labels = self.labels.index_select(0, index).long()  # (B, H, W)
            images = torch.where(flips[:, None, None, None], images.flip(-1), images)
            labels = torch.where(flips[:, None, None], labels.flip(-1), labels)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            yield images, labels

    def _flips(self, iteration: int, slot: int) -> bool:
        if not self.flip:
            return False
        generator = torch.Generator().manual_seed(sampling.derive_seed(self.seed, iteration, slot))
        return bool(torch.rand((), generator=generator) < 0.5)


def to_device(batch: Batch, device: torch.device, channels_last: bool) -> Batch:
    images, labels = batch
    images = images.to(device, non_blocking=True)
    labels = labels.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def prefetched(
    batches: Iterable[Batch], device: torch.device, channels_last: bool
) -> Iterator[Batch]:
    """`batches` on `device`; on CUDA the next one is copied on a side stream meanwhile."""
    if device.type != "cuda":
        for batch in batches:
            yield to_device(batch, device, channels_last)
        return
    stream = torch.cuda.Stream(device)
    current = torch.cuda.current_stream(device)
    source = iter(batches)

    def load() -> Batch | None:
        batch = next(source, None)
        if batch is None:
            return None
        with torch.cuda.stream(stream):
            return to_device(batch, device, channels_last)

    ahead = load()
    while ahead is not None:
        current.wait_stream(stream)  # the copy of this batch is done before the step uses it
        images, labels = ahead
        # Allocated on the side stream, used on the current one: keep the memory until then.
        images.record_stream(current)
        labels.record_stream(current)
        ahead = load()
        yield images, labels


__all__ = [
    "RESIDENT_CPU_BYTES",
    "RESIDENT_FRACTION",
    "ResidentBatches",
    "device_copy",
    "prefetched",
    "release_device_copy",
    "resident_fits",
    "to_device",
]
