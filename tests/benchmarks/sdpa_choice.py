"""NonLocal training-step time, SDPA over the explicit matrix, across sizes and dtypes.

    PYTHONPATH=. python tests/benchmarks/sdpa_choice.py --pairs 8
    PYTHONPATH=. python tests/benchmarks/sdpa_choice.py --sizes 16 48 --dtypes bfloat16

The measurement behind use_sdpa's default: forward + backward in train mode, input
(2, C, s, s), float32 or under autocast to bfloat16, with and without sub_sample,
the two paths alternating on one module (pairing.py). Below 1.00 SDPA is faster.
"""

from __future__ import annotations

import argparse
import contextlib

import torch
from pairing import run_pairs

import modules


def _step(module: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor, dtype: str):
    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        autocast = (
            torch.autocast(x.device.type, dtype=getattr(torch, dtype))
            if dtype != "float32"
            else contextlib.nullcontext()
        )
        with autocast:
            out = module(x)
        out.float().backward(grad)

    return step


def ratio(channels: int, size: int, dtype: str, sub_sample: bool, pairs: int) -> str:
    """'median [min, max]' of SDPA / explicit over `pairs` alternating pairs."""
    torch.manual_seed(0)
    sdpa = modules.build("nonlocal", channels, sub_sample=sub_sample).train()
    explicit = modules.build("nonlocal", channels, sub_sample=sub_sample, use_sdpa=False)
    explicit.load_state_dict(sdpa.state_dict())
    explicit.train()
    x = torch.randn(2, channels, size, size, requires_grad=True)
    grad = torch.randn(2, channels, size, size)
    sides = (_step(sdpa, x, grad, dtype), _step(explicit, x, grad, dtype))
    median, low, high = run_pairs(sides, pairs).summary("wall")
    return f"{median:.3f} [{low:.2f}, {high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 32, 48, 65])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=0, help="0: leave as is")
    parser.add_argument("--pairs", type=int, default=8)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"nonlocal SDPA / explicit, train step, batch 2, C={args.channels}, cpu, "
        f"{torch.get_num_threads()} thread(s), torch {torch.__version__}, "
        f"{args.pairs} alternating pairs, median [min, max]\n"
    )
    print("| size | dtype | sub_sample=False | sub_sample=True |\n|---|---|---|---|")
    for size in args.sizes:
        for dtype in args.dtypes:
            cells = [ratio(args.channels, size, dtype, sub, args.pairs) for sub in (False, True)]
            print(f"| {size}x{size} | {dtype} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
