"""Latency of a callable, and the device's dense matmul rate to compare it with.

torch.utils.benchmark.Timer does the timing (it synchronises CUDA around every
measurement and pins the thread count). A warm-up call and a calibration call come
first; then calls are grouped so that one sample lasts at least `min_sample_s`
(short calls are otherwise dominated by timer overhead), and as many samples are
taken as fit in `budget_s`, never fewer than `min_samples` nor more than
`max_samples`; an ungrouped calibration call counts as the first sample. The
median and the interquartile range of the per-call times are reported.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.benchmark import Timer


@dataclass(frozen=True)
class Latency:
    """Seconds per call: median and interquartile range over `samples` samples, each
    the mean of `number` back-to-back calls."""

    median_s: float
    iqr_s: float
    samples: int
    number: int


def time_callable(
    fn: Callable[[], Any],
    *,
    budget_s: float = 1.0,
    min_samples: int = 3,
    max_samples: int = 50,
    min_sample_s: float = 0.01,
) -> Latency:
    """Median and IQR of the time per call of `fn()` (see the module docstring)."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    timer.timeit(1)  # warm-up: first-call allocations, kernel selection, lazy init
    once = max(timer.timeit(1).median, 1e-7)
    number = max(1, math.ceil(min_sample_s / once))
    samples = int(budget_s / (once * number))
    samples = min(max(samples, min_samples), max_samples)
    # A slow call's calibration run is already a valid sample; keep it.
    first = [once] if number == 1 else []
    times = np.array(first + [timer.timeit(number).median for _ in range(samples - len(first))])
    q1, median, q3 = np.percentile(times, [25, 50, 75])
    return Latency(float(median), float(q3 - q1), samples, number)


def inference_step(model: nn.Module, *inputs: torch.Tensor) -> Callable[[], Any]:
    """One forward without gradient; the caller puts the model in eval mode."""

    def step() -> torch.Tensor:
        with torch.no_grad():
            return model(*inputs)

    return step


def training_step(model: nn.Module, *inputs: torch.Tensor) -> Callable[[], Any]:
    """One forward + backward (loss = mean of the output), gradients reset to None
    first; the caller puts the model in train mode. No optimiser step: its cost is one
    elementwise pass over the weights, the same for every module."""

    def step() -> None:
        model.zero_grad(set_to_none=True)
        for t in inputs:
            t.grad = None
        with torch.enable_grad():
            model(*inputs).float().mean().backward()

    return step


@contextlib.contextmanager
def fastest_numerics(device: torch.device, dtype: torch.dtype) -> Iterator[str]:
    """Run a float32 matmul under the fastest numerics any measured op may use; yields a
    description of them.

    cuDNN convolutions run in TF32 when torch.backends.cudnn.allow_tf32 (torch's
    default), while matmuls default to full float32: a reference matmul with TF32 off
    is then slower than the convolutions it is compared with, and "% of it" passes 100.
    """
    if device.type != "cuda" or dtype != torch.float32:
        yield f"{str(dtype).removeprefix('torch.')}, no TF32"
        return
    saved = torch.backends.cuda.matmul.allow_tf32
    tf32 = saved or torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield f"float32, TF32 {'on' if tf32 else 'off'} (as cuDNN convolutions)"
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def matmul_rate(
    device: torch.device, dtype: torch.dtype, *, size: int = 2048, budget_s: float = 1.0
) -> tuple[float, str]:
    """Dense (size x size) @ (size x size) multiply-accumulates per second on `device`,
    under `fastest_numerics`; returns the rate and the numerics used."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    with fastest_numerics(device, dtype) as numerics:
        latency = time_callable(lambda: a @ b, budget_s=budget_s, min_samples=5)
    return size**3 / latency.median_s, numerics


__all__ = [
    "Latency",
    "fastest_numerics",
    "inference_step",
    "matmul_rate",
    "time_callable",
    "training_step",
]
