"""A2 training-step time: the module against the other forms of the same function.

    PYTHONPATH=. python tests/benchmarks/a2_forms.py --pairs 20

No mmcv/mmseg A2 exists, so the issue asks for the fastest formulation found. The
forms, all with the module's weights, forward + backward in train mode, float32,
input (2, 256, 48, 48) unless --shape, alternating with the module (pairing.py):

- conv2d, paper order: the 1x1 maps as conv2d (A, B and V fused), Z = G D, then W;
- batched products, paper order: the 1x1 maps as batched products (peers.a2_peer,
  the peer that ratios.py and the pytest benchmark use);
- the module: batched products, W and its bias applied to G before the distribution.

Each cell is ours / form, median [min, max] over the pairs; below 1.00 ours is faster.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from pairing import SHAPE, Setup, build, run_pairs
from peers import a2_conv_peer, a2_peer
from torch import nn

FORMS = {"conv2d, paper order": a2_conv_peer, "batched products, paper order": a2_peer}


def _row(setup: Setup, form: Callable[[nn.Module, torch.Tensor], torch.Tensor], pairs: int) -> str:
    """'median [min, max] | max abs diff' of ours / form over `pairs` alternating pairs."""
    with torch.no_grad():
        diff = (setup.module(setup.x) - form(setup.module, setup.x)).abs().max().item()

    def theirs() -> None:
        setup.step(lambda t: form(setup.module, t))

    median, low, high = run_pairs((setup.ours, theirs), pairs).summary("wall")
    return f"{median:.3f} [{low:.2f}, {high:.2f}] | {diff:.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--shape", nargs=4, type=int, default=list(SHAPE))
    args = parser.parse_args()
    print(
        f"a2, ours / form, train-mode forward + backward, float32, cpu, input "
        f"{tuple(args.shape)}, {args.pairs} alternating pairs, torch {torch.__version__}\n"
    )
    print("| form | threads | wall: median [min, max] | max abs diff |")
    print("|---|---|---|---|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        setup = build("a2", tuple(args.shape))
        for label, form in FORMS.items():
            print(f"| {label} | {threads} | {_row(setup, form, args.pairs)} |", flush=True)


if __name__ == "__main__":
    main()
