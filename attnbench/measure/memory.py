"""Memory figures that say what they measure.

Three figures, each named for its method (`MemoryFigure.kind`):

- "saved_for_backward": bytes of the tensors autograd keeps from one forward for the
  backward pass (torch.autograd.graph.saved_tensors_hooks), each storage counted once
  and the model's own parameters and buffers left out. Device independent; the
  activation memory a training step must hold at the turn from forward to backward.
- "cpu_alloc_peak": the peak, during one call, of bytes allocated minus bytes freed by
  the CPU allocator, from the profiler's allocation events (torch.profiler with
  profile_memory=True), relative to what was live before the call. Includes the
  output, temporaries inside kernels and, for a training step, the gradients; not
  the weights or the input, which were live before.
- "cuda_max_allocated": torch.cuda.max_memory_allocated during the call minus
  memory_allocated before it (peak over the baseline), after synchronising.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

SAVED = "saved_for_backward"
CPU_PEAK = "cpu_alloc_peak"
CUDA_PEAK = "cuda_max_allocated"

DESCRIPTIONS: dict[str, str] = {
    SAVED: "bytes autograd saves for backward in one forward (each storage once, "
    "parameters and buffers excluded)",
    CPU_PEAK: "peak of CPU bytes allocated minus freed during the call (torch.profiler "
    "allocation events), over what was live before",
    CUDA_PEAK: "torch.cuda.max_memory_allocated during the call minus memory_allocated before it",
}


@dataclass(frozen=True)
class MemoryFigure:
    """A byte count and the name of the method that produced it (see DESCRIPTIONS)."""

    bytes: int
    kind: str

    @property
    def mb(self) -> float:
        return self.bytes / 2**20


def _storage_key(t: torch.Tensor) -> tuple[str, int]:
    return (str(t.device), t.untyped_storage().data_ptr())


def saved_tensor_bytes(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Bytes saved for backward by one forward of `model(*inputs)`, in its current mode.

    Call `model.train()` first for the training figure. Views of one storage count
    once; the model's parameters and buffers (live anyway) are not counted. Inputs
    that the model saves are counted: in a network they are the previous layer's
    activations.
    """
    own = {_storage_key(t) for t in [*model.parameters(), *model.buffers()]}
    seen: dict[tuple[str, int], int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        # The graph keeps every saved tensor alive until `out` dies, so no address
        # can be reused for another saved storage during this forward.
        if t.layout == torch.strided and t.device.type != "meta":
            key = _storage_key(t)
            if key not in own:
                seen[key] = t.untyped_storage().nbytes()
        return t

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(*inputs)
    del out
    return sum(seen.values())


def _allocation_events(prof: Any) -> list[tuple[int, int]]:
    """(time ns, signed bytes) of every CPU allocation and free the profiler saw."""
    from torch._C._profiler import _EventType

    events: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation:
            extra = event.extra_fields
            if extra.device.type == "cpu":
                events.append((event.start_time_ns, extra.alloc_size))
        stack.extend(event.children)
    return sorted(events)


def cpu_peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of CPU bytes allocated minus freed while `fn()` runs (kind cpu_alloc_peak)."""
    from torch.profiler import ProfilerActivity, profile

    # Kineto prints a start/stop line per profile at its default log level; 6 is
    # above every level it has. Read once, at the first profile; a user's value wins.
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
        del result
    live = peak = 0
    for _, size in _allocation_events(prof):
        live += size
        peak = max(peak, live)
    return peak


def cuda_peak_bytes(fn: Callable[[], Any], device: torch.device | str = "cuda") -> int:
    """max_memory_allocated during `fn()` minus memory_allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    baseline = torch.cuda.memory_allocated(device)
    result = fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) - baseline
    del result
    return peak


def peak_memory(fn: Callable[[], Any], device: torch.device | str) -> MemoryFigure:
    """The honest peak figure for `device`: CUDA allocator peak, or the CPU profiler's."""
    device = torch.device(device)
    if device.type == "cuda":
        return MemoryFigure(cuda_peak_bytes(fn, device), CUDA_PEAK)
    return MemoryFigure(cpu_peak_bytes(fn), CPU_PEAK)


def inference_memory(model: nn.Module, *inputs: torch.Tensor) -> MemoryFigure:
    """Peak memory of one forward in eval mode without gradient, on the inputs' device."""
    from .flops import eval_mode

    def run() -> None:
        with torch.no_grad():
            model(*inputs)

    with eval_mode(model):
        return peak_memory(run, inputs[0].device)


def training_memory(model: nn.Module, *inputs: torch.Tensor) -> MemoryFigure:
    """Peak memory of one forward + backward (loss = mean of the output), current mode.

    Gradients (of the parameters and of inputs that require them) are set to None
    first, so the figure includes allocating them.
    """

    from .timing import training_step

    figure = peak_memory(training_step(model, *inputs), inputs[0].device)
    model.zero_grad(set_to_none=True)
    for t in inputs:
        t.grad = None
    return figure


__all__ = [
    "CPU_PEAK",
    "CUDA_PEAK",
    "DESCRIPTIONS",
    "SAVED",
    "MemoryFigure",
    "cpu_peak_bytes",
    "cuda_peak_bytes",
    "inference_memory",
    "peak_memory",
    "saved_tensor_bytes",
    "training_memory",
]
