"""Print ours / peer training-step time for every module, at 1 and 2 threads.

    PYTHONPATH=. python tests/benchmarks/ratios.py                     # all modules, 20 pairs
    PYTHONPATH=. python tests/benchmarks/ratios.py --modules ccnet danet --pairs 40

Forward + backward in train mode, float32, input (2, 256, 48, 48) unless --shape,
against the peer formulations of peers.py; paired and alternating (pairing.py).
Each cell is the median ratio over the pairs and [min, max]; below 1.00 ours is
faster. "wall" is elapsed time, "cpu" the process's CPU time (less sensitive to
other processes on a shared machine, but at 2 threads it also counts spinning).
"""

from __future__ import annotations

import argparse
import statistics

import torch
from pairing import SHAPE, build, max_difference, run_pairs
from peers import PEERS

import modules


def _cell(summary: tuple[float, float, float]) -> str:
    median, low, high = summary
    return f"{median:.3f} [{low:.2f}, {high:.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--shape", nargs=4, type=int, default=list(SHAPE))
    args = parser.parse_args()
    shape = tuple(args.shape)
    print(
        f"ours / peer, forward + backward, train mode, float32, cpu, input {shape}, "
        f"{args.pairs} alternating pairs, torch {torch.__version__}, "
        f"modules from {modules.__file__}\n"
    )
    print("| module | threads | wall: median [min, max] | cpu: median [min, max] "
          "| ours ms | peer ms | max abs diff |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in args.modules:
        for threads in args.threads:
            torch.set_num_threads(threads)
            setup = build(name, shape)
            diff = max_difference(setup)
            pairs = run_pairs((setup.ours, setup.peer), args.pairs)
            print(
                f"| {name} | {threads} | {_cell(pairs.summary('wall'))} "
                f"| {_cell(pairs.summary('cpu'))} "
                f"| {1e3 * statistics.median(pairs.ours_wall):.1f} "
                f"| {1e3 * statistics.median(pairs.peer_wall):.1f} | {diff:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
