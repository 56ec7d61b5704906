"""Diagnostics that tell "cannot" from "did not learn": engagement and knock-out.

engagement  ||module(x) - x|| / ||x|| over validation images: how much the context
            module changes its input. Zero-initialised gates start it at 0; a module
            whose gate never opened stays near 0 and cannot have used any context.
gate effect ||module(x) - module_closed(x)|| / ||x||, module_closed being the module
            with its gates (module.gates()) at 0: how much of the change passes through
            the gates. It differs from engagement where the block also changes its
            input outside the gates: DANet convolves both branches after the gammas, so
            its engagement is about 1 with both gammas still at 0.
knock-out   the same evaluation with the context module replaced by the identity: the
            long-range classes' IoU falls to chance when the module is what carries
            the cue, and stays when the backbone or the rest of the head does.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..env import autocast


def _context(model: nn.Module) -> nn.Module:
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    return model.head.context


Reference = Callable[[nn.Module, torch.Tensor], torch.Tensor]


@torch.no_grad()
def _relative_change(
    model: nn.Module, loader: DataLoader, reference: Reference, amp: bool, batches: int
) -> float:
    """||module(x) - reference(module, x)|| / ||x|| over the first `batches` batches,
    `module` being the context module and `x` its input."""
    device = next(model.parameters()).device
    change, size = torch.zeros((), device=device), torch.zeros((), device=device)

    def measure(module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        nonlocal change, size
        x = inputs[0]  # (B, C, h, w)
        change = change + (output.float() - reference(module, x).float()).square().sum()
        size = size + x.float().square().sum()

    was_training = model.training
    model.eval()
    handle = _context(model).register_forward_hook(measure)
    try:
        for i, (images, _) in enumerate(loader):
            if i == batches:
                break
            with autocast(device, amp):
                model(images.to(device, non_blocking=True))
    finally:
        handle.remove()
        model.train(was_training)
    return float((change / size.clamp_min(1e-12)).sqrt())


def engagement(model: nn.Module, loader: DataLoader, amp: bool = False, batches: int = 4) -> float:
    """||module(x) - x|| / ||x||, summed over the first `batches` validation batches."""
    return _relative_change(model, loader, lambda _module, x: x, amp, batches)


def _closed_output(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with gates_closed(module):
        return module.forward(x)  # forward, not __call__: the measuring hook is not run again


def gate_effect(model: nn.Module, loader: DataLoader, amp: bool = False, batches: int = 4) -> float:
    """||module(x) - module_closed(x)|| / ||x|| over the first `batches` validation
    batches; NaN for a module without a gate."""
    if not _context(model).gates():
        return math.nan
    return _relative_change(model, loader, _closed_output, amp, batches)


def switched_on(model: nn.Module, loader: DataLoader, amp: bool = False) -> dict[str, float]:
    """{"engagement": ..., "gate_effect": ...}, the second for a module with gates only."""
    figures = {"engagement": engagement(model, loader, amp)}
    gated = gate_effect(model, loader, amp)
    if not math.isnan(gated):
        figures["gate_effect"] = gated
    return figures


@contextlib.contextmanager
def gates_closed(module: nn.Module) -> Iterator[None]:
    """Within the block, the module's gates are at 0, where the paper starts them."""
    gates = module.gates()
    saved = [gate.detach().clone() for gate in gates]
    with torch.no_grad():
        for gate in gates:
            gate.zero_()
    try:
        yield
    finally:
        with torch.no_grad():
            for gate, value in zip(gates, saved, strict=True):
                gate.copy_(value)


@contextlib.contextmanager
def knocked_out(model: nn.Module) -> Iterator[None]:
    """Within the block, the context module passes its input through unchanged."""

    def identity(_module: nn.Module, inputs: tuple[torch.Tensor], _output: Any) -> torch.Tensor:
        return inputs[0]

    handle = _context(model).register_forward_hook(identity)
    try:
        yield
    finally:
        handle.remove()


def long_range_miou(iou: Sequence[float], classes: Sequence[int]) -> float | None:
    """Mean IoU over the data set's long-range classes (those a local network cannot
    tell apart); None for a data set that declares none. NaN classes are left out."""
    values = [iou[c] for c in classes if iou[c] == iou[c]]
    return sum(values) / len(values) if values else None


def context_figures(
    model: nn.Module, loader: DataLoader, iou: Sequence[float], classes: Sequence[int], amp: bool
) -> dict[str, float]:
    """What an evaluation point records beside mIoU: engagement, the gate effect (gated
    modules), and the long-range mIoU."""
    figures = switched_on(model, loader, amp)
    value = long_range_miou(iou, classes)
    if value is not None:
        figures["long_range_mIoU"] = value
    return figures
