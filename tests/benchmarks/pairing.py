"""Paired, alternating timing of a module against its peer formulation (peers.py).

One training step is: gradients reset, forward in train mode, backward of a fixed
random output gradient (a real network hands back a dense gradient; `.mean()` would
hand back an expanded one and take other kernel paths). Ours and the peer run on
the same module instance (same weights, float32, CPU unless CUDA is asked for), one
after the other, the order swapped on every pair so that neither side always runs
second on warm caches. A pair's ratio is ours / peer; its spread over pairs is what
a shared, loaded machine does to the figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peers import PEERS

import modules

SHAPE = (2, 256, 48, 48)  # the setting: (B, C, H, W)


@dataclass(frozen=True)
class Pairs:
    """Seconds per call of ours (the first side) and of the peer (the second), pair by
    pair, by wall clock and by process CPU time."""

    ours_wall: list[float]
    peer_wall: list[float]
    ours_cpu: list[float]
    peer_cpu: list[float]

    def ratios(self, clock: str = "wall") -> list[float]:
        ours, peer = (self.ours_wall, self.peer_wall) if clock == "wall" else (
            self.ours_cpu, self.peer_cpu)  # fmt: skip
        return [a / b for a, b in zip(ours, peer, strict=True)]

    def summary(self, clock: str = "wall") -> tuple[float, float, float]:
        """(median, min, max) of ours / peer over the pairs."""
        r = self.ratios(clock)
        return statistics.median(r), min(r), max(r)


@dataclass
class Setup:
    """A module, its input and output gradient, and one training step of each side."""

    name: str
    module: torch.nn.Module
    x: torch.Tensor
    grad: torch.Tensor

    def step(self, forward: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.module.zero_grad(set_to_none=True)
        self.x.grad = None
        forward(self.x).backward(self.grad)

    def ours(self) -> None:
        self.step(self.module)

    def peer(self) -> None:
        self.step(lambda t: PEERS[self.name](self.module, t))


def build(name: str, shape: tuple[int, ...] = SHAPE, device: str = "cpu") -> Setup:
    """Module `name` with seed-0 weights and its non-trivial gates opened."""
    torch.manual_seed(0)
    module = modules.build(name, shape[1]).to(device).train()
    _open_gates(module)
    x = torch.randn(*shape, device=device, requires_grad=True)
    grad = torch.randn(*shape, device=device)
    return Setup(name, module, x, grad)


def _open_gates(module: torch.nn.Module) -> None:
    """Zero-initialised gates would make both sides' outputs trivially equal."""
    with torch.no_grad():
        for key, param in module.named_parameters():
            if key.startswith("gamma") or key.endswith("bn.weight") or key == "out_conv.weight":
                param.normal_(0.5, 0.1)


def max_difference(setup: Setup) -> float:
    """Largest |ours - peer| of the outputs, in eval mode (BN running statistics)."""
    module = setup.module
    was_training = module.training
    state = {k: v.clone() for k, v in module.state_dict().items()}
    module.eval()
    with torch.no_grad():
        diff = (module(setup.x) - PEERS[setup.name](module, setup.x)).abs().max().item()
    module.load_state_dict(state)
    module.train(was_training)
    return diff


def _timed(fn: Callable[[], None], sync: Callable[[], None]) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - wall, time.process_time() - cpu


Sides = tuple[Callable[[], None], Callable[[], None]]


def time_pair(sides: Sides, index: int, into: Pairs, device: str = "cpu") -> None:
    """One call of each side, the first side first on even `index`; append to `into`."""
    cuda = torch.device(device).type == "cuda"
    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    times: list[tuple[float, float]] = [(0.0, 0.0), (0.0, 0.0)]
    for side in (0, 1) if index % 2 == 0 else (1, 0):
        times[side] = _timed(sides[side], sync)
    into.ours_wall.append(times[0][0])
    into.peer_wall.append(times[1][0])
    into.ours_cpu.append(times[0][1])
    into.peer_cpu.append(times[1][1])


def run_pairs(sides: Sides, pairs: int, warmup: int = 2, device: str = "cpu") -> Pairs:
    """`pairs` alternating calls of the two sides after `warmup` of each."""
    for i in range(warmup):
        time_pair(sides, i, Pairs([], [], [], []), device)
    out = Pairs([], [], [], [])
    for i in range(pairs):
        time_pair(sides, i, out, device)
    return out
