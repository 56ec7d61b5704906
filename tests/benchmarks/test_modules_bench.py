"""pytest-benchmark suite: forward and forward + backward of every module alone at
(1, 512, 65, 65), the head's input size for a 513 crop at output stride 8.

Not collected by the default test command (pyproject's addopts ignore this folder).
Run and compare (see tests/benchmarks/README.md):

    pytest tests/benchmarks --benchmark-only --benchmark-autosave
    pytest tests/benchmarks --benchmark-only --benchmark-compare

ATTNBENCH_BENCH_SIZE and ATTNBENCH_BENCH_THREADS override the size (default 65) and
the CPU thread count (default: tests/conftest.py's single thread). On a CUDA machine
the modules run there and every timed call ends with a synchronize. MACs, memory
and the run's settings go into each benchmark's extra_info.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

import modules
from attnbench.measure.flops import count_macs, flop_counter_count
from attnbench.measure.memory import inference_memory, saved_tensor_bytes, training_memory
from attnbench.measure.timing import inference_step, training_step

SIZE = int(os.environ.get("ATTNBENCH_BENCH_SIZE", "65"))
CHANNELS = 512
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
if "ATTNBENCH_BENCH_THREADS" in os.environ:
    torch.set_num_threads(int(os.environ["ATTNBENCH_BENCH_THREADS"]))


def _synchronised(fn: Callable[[], Any]) -> Callable[[], Any]:
    """CUDA calls return before the work is done; time until it is."""
    if DEVICE.type != "cuda":
        return fn

    def run() -> None:
        fn()
        torch.cuda.synchronize(DEVICE)

    return run


def _setting() -> dict[str, Any]:
    return {
        "shape": [1, CHANNELS, SIZE, SIZE],
        "device": DEVICE.type,
        "device_name": torch.cuda.get_device_name(DEVICE) if DEVICE.type == "cuda" else "cpu",
        "dtype": "float32",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "macs_convention": "multiply-accumulates (FLOPs = 2 x MACs)",
    }


@pytest.mark.parametrize("name", modules.available())
def test_forward(benchmark, name: str) -> None:
    torch.manual_seed(0)
    module = modules.build(name, CHANNELS).to(DEVICE).eval()
    x = torch.randn(1, CHANNELS, SIZE, SIZE, device=DEVICE)
    count = count_macs(module, x)
    memory = inference_memory(module, x)
    benchmark.group = f"forward {SIZE}x{SIZE}"
    benchmark.extra_info.update(
        _setting(),
        macs=count.total,
        macs_matrix=count.matrix,
        macs_formula=module.macs(SIZE, SIZE),
        unsupported_ops=count.unsupported,
        params=sum(p.numel() for p in module.parameters()),
        memory_mb=round(memory.mb, 3),
        memory_kind=memory.kind,
    )
    benchmark(_synchronised(inference_step(module, x)))


@pytest.mark.parametrize("name", modules.available())
def test_forward_backward(benchmark, name: str) -> None:
    torch.manual_seed(0)
    module = modules.build(name, CHANNELS).to(DEVICE).train()
    x = torch.randn(1, CHANNELS, SIZE, SIZE, device=DEVICE, requires_grad=True)
    saved = saved_tensor_bytes(module, x)
    memory = training_memory(module, x)
    benchmark.group = f"forward+backward {SIZE}x{SIZE}"
    benchmark.extra_info.update(
        _setting(),
        macs_fwd_bwd_flop_counter=flop_counter_count(module, x, backward=True).macs,
        saved_for_backward_mb=round(saved / 2**20, 3),
        memory_mb=round(memory.mb, 3),
        memory_kind=memory.kind,
    )
    benchmark(_synchronised(training_step(module, x)))
