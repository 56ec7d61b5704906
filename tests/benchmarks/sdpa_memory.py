"""Peak memory of NonLocal's forward + backward, SDPA against the explicit matrix.

    PYTHONPATH=. python tests/benchmarks/sdpa_memory.py            # (1, 64, 128, 128)
    PYTHONPATH=. python tests/benchmarks/sdpa_memory.py --size 96 --channels 128

On CPU the figure is the profiler's allocation peak (allocated minus freed, the
kind `cpu_alloc_peak` of attnbench.measure.memory); on CUDA the allocator's peak.
The explicit path at the default size holds 16384 x 16384 float32 matrices
(1 GiB each): it needs several GiB of free memory.
"""

from __future__ import annotations

import argparse

import torch

import modules
from attnbench.measure.memory import peak_memory


def measure(channels: int, size: int, device: torch.device) -> dict[str, float]:
    """MiB of forward + backward for use_sdpa False and True, and their ratio."""
    torch.manual_seed(0)
    module = modules.build("nonlocal", channels).to(device).train()
    x = torch.randn(1, channels, size, size, device=device, requires_grad=True)

    def step() -> None:
        module(x).sum().backward()

    mib = {}
    for use_sdpa in (False, True):
        module.use_sdpa = use_sdpa
        step()  # warm-up: lazy initialisation, gradients allocated once
        module.zero_grad(set_to_none=True)
        x.grad = None
        mib[use_sdpa] = peak_memory(step, device).mb
    return {"explicit_mib": mib[False], "sdpa_mib": mib[True], "ratio": mib[True] / mib[False]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    fig = measure(args.channels, args.size, device)
    print(
        f"nonlocal forward+backward, input (1, {args.channels}, {args.size}, {args.size}), "
        f"float32, {device.type}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, module from {modules.__file__}"
    )
    print("| path | peak MiB |\n|---|---|")
    print(f"| explicit N x N | {fig['explicit_mib']:.1f} |")
    print(f"| SDPA (B, 1, N, Ci) | {fig['sdpa_mib']:.1f} |")
    print(f"SDPA / explicit = {fig['ratio']:.4f}")


if __name__ == "__main__":
    main()
