"""Cost figures of one run: parameters, MACs per image and training memory.

MACs are counted for batch 1 at the experiment's training resolution (the crop
size, or the synthetic image size): the head (context module included, auxiliary
head excluded: it is not used at inference) on the backbone feature of that
image, and the context module alone on the feature it receives. Training memory on
CUDA is the allocator's peak during training; on CPU, which has no allocator peak,
it is the bytes autograd saves for backward in one training forward of the whole
model at the per-process training batch, and labelled as such.
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ..model.segmenter import Segmenter, count_parameters
from . import memory
from .flops import count_macs
from .memory import saved_tensor_bytes

CUDA_PEAK = "cuda_peak_allocated"
CPU_SAVED = "cpu_saved_for_backward"
MEMORY_KINDS = {
    CUDA_PEAK: "torch.cuda.max_memory_allocated over the whole training run, per "
    "GPU: weights, optimizer state, activations and gradients",
    CPU_SAVED: "bytes autograd saves for backward in one training forward of "
    "the whole model at the per-process batch: activations only, not a peak, as CPU has no "
    "allocator peak",
}


def memory_meaning(kind: str) -> str | None:
    """What a memory kind measures: a run's (above) or a profile's (measure/memory.py)."""
    return MEMORY_KINDS.get(kind) or memory.DESCRIPTIONS.get(kind)


def static_costs(model: Segmenter, image_size: tuple[int, int]) -> dict[str, Any]:
    """params, params_module, macs, macs_module; the model itself is left untouched."""
    costs: dict[str, Any] = {
        "params": count_parameters(model.head),
        "params_module": count_parameters(model.head.context),
        "cost_image_size": list(image_size),
    }
    probe = copy.deepcopy(model).cpu().float().eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        _, c4 = probe.backbone(torch.zeros(1, 3, *image_size))  # (1, C4, h, w)
        feature = probe.head.context_input(c4)  # (1, C, h, w)
    costs["feature_size"] = list(feature.shape[-2:])
    with torch.random.fork_rng(devices=[]):
        head = count_macs(probe.head, c4)
        module = count_macs(probe.head.context, feature)
    unsupported = sorted({*head.unsupported, *module.unsupported})
    if unsupported:
        costs["macs_unsupported_ops"] = unsupported
    return {**costs, "macs": head.total, "macs_module": module.total}


def cpu_training_memory(model: Segmenter, batch: torch.Tensor) -> dict[str, Any]:
    """Bytes saved for backward by one training forward of a copy of `model` on `batch`."""
    probe = copy.deepcopy(model).cpu().float().train()
    with torch.random.fork_rng(devices=[]):
        saved = saved_tensor_bytes(probe, batch.cpu().float())
    return {"train_memory_mb": saved / 2**20, "memory_kind": CPU_SAVED}


def cuda_training_memory(peak_bytes: int) -> dict[str, Any]:
    return {"train_memory_mb": peak_bytes / 2**20, "memory_kind": CUDA_PEAK}
