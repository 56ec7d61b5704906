"""Latency of a callable, and the numerics of the reference matmul."""

from __future__ import annotations

import torch

from attnbench.measure.timing import fastest_numerics, time_callable


def test_time_callable_reports_median_and_spread() -> None:
    a = torch.randn(64, 64)
    lat = time_callable(lambda: a @ a, budget_s=0.05, min_samples=3, max_samples=10)
    assert lat.median_s > 0 and lat.iqr_s >= 0 and 3 <= lat.samples <= 10 and lat.number >= 1


def test_reference_matmul_uses_the_convolutions_tf32_setting() -> None:
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
    try:
        # Only backend flags are touched, so a CUDA device object works without a GPU.
        with fastest_numerics(torch.device("cuda"), torch.float32) as numerics:
            assert torch.backends.cuda.matmul.allow_tf32 and "TF32 on" in numerics
        assert not torch.backends.cuda.matmul.allow_tf32
        with fastest_numerics(torch.device("cpu"), torch.float32) as numerics:
            assert not torch.backends.cuda.matmul.allow_tf32 and "no TF32" in numerics
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
