"""Several seeds of one head trained as one batched model (`train.seed_batch`).

The S models of a seed batch, identical in architecture, are stacked parameter by
parameter (torch.func.stack_module_state: every tensor gains a leading seed axis),
and one forward maps the model over that axis (torch.func.vmap of functional_call
on a weightless copy): seed s's images go through seed s's weights. Each seed keeps
its own buffers, so its BatchNorm running statistics (and EMA's bases) move as in
its own run. The loss is the sum of the seeds' losses, so each seed's slice of a
gradient is its own loss's gradient; SGD with momentum and weight decay is
elementwise, so one step on the stacked tensors is S steps of S optimizers.

Dropout is the one random draw in a training step. vmap cannot draw from S
generators, so the draws happen outside it: each seed keeps the torch RNG state its
own run would hold (see `SeedRng`), and `draw_noise` draws with it, in the order and
at the shapes the separate run would, the noise that F.dropout2d / F.dropout draw
(bernoulli(1 - p), divided by 1 - p). Inside the mapped forward a `SeedDropout`
multiplies by it. The first step finds the order and the shapes with one training
forward of a copy, its RNG restored.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..env import autocast
from . import checkpoint

DROPOUTS = (nn.Dropout, nn.Dropout2d)
NOISE = "noise"  # the buffer name of a SeedDropout's noise


class SeedDropout(nn.Module):
    """Dropout whose noise (drawn outside vmap, see `draw_noise`) is given as a buffer."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p
        self.register_buffer(NOISE, torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0 or not self.training:
            return x
        return x * self.noise  # noise (B, C, 1, 1) for Dropout2d, x's shape for Dropout


class SeedRng:
    """The RNG states (python, numpy, torch CPU and CUDA) of S runs, one in play at a time."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = states

    @contextmanager
    def of(self, s: int) -> Iterator[None]:
        """The global generators hold seed s's states inside; its states are kept after."""
        outside = checkpoint.rng_state()
        checkpoint.set_rng_state(self.states[s])
        try:
            yield
        finally:
            self.states[s] = checkpoint.rng_state()
            checkpoint.set_rng_state(outside)

    @contextmanager
    def torch_of(self, s: int, device: torch.device) -> Iterator[None]:
        """`of` for the torch generator of `device` alone (what dropout draws from)."""
        key = "cuda" if device.type == "cuda" else "torch"
        get, put = _generator_access(device)
        outside = get()
        put(self.states[s][key][device.index or 0] if key == "cuda" else self.states[s][key])
        try:
            yield
        finally:
            now = get()
            if key == "cuda":
                self.states[s][key] = list(self.states[s][key])
                self.states[s][key][device.index or 0] = now
            else:
                self.states[s][key] = now
            put(outside)


def _generator_access(device: torch.device) -> tuple[Any, Any]:
    if device.type == "cuda":
        return (lambda: torch.cuda.get_rng_state(device)), (
            lambda state: torch.cuda.set_rng_state(state, device)
        )
    return torch.get_rng_state, torch.set_rng_state


def seeded_rng_state(seed: int) -> dict[str, Any]:
    """The python and numpy states that env.seed_everything(seed) leaves (training never
    draws from them; a checkpoint records them)."""
    py, npy = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    state = {"python": random.getstate(), "numpy": np.random.get_state()}
    random.setstate(py)
    np.random.set_state(npy)
    return state


def batched_kernels(device: torch.device) -> AbstractContextManager:
    """Where the batched forward and backward run: on CPU without oneDNN (mkldnn), whose
    grouped convolution, which vmap makes of a convolution with per-seed weights, gave
    weight gradients off by up to 5 % against float64 on the tiny dilated ResNet of
    tests/train/test_seed_batch.py (torch's own kernels agree with float64 to 1e-7)."""
    if device.type == "cpu":
        return torch.backends.mkldnn.flags(enabled=False)
    return nullcontext()


class SeedBatch:
    """S models of one architecture trained as one: stacked weights and buffers, one
    vmapped forward, one SGD optimizer over the stacked parameters."""

    def __init__(self, models: list[nn.Module]) -> None:
        self.models = models
        self.params, self.buffers = stack_module_state(models)  # each (S, ...)
        skeleton = copy.deepcopy(models[0])
        self.dropouts = _swap_dropouts(skeleton)
        self.skeleton = skeleton.to("meta").train()
        self.trainable = [n for n, p in models[0].named_parameters() if p.requires_grad]
        self.noise_order: list[tuple[str, float, torch.Size, torch.dtype]] | None = None

    @property
    def size(self) -> int:
        return len(self.models)

    def forward(
        self, images: torch.Tensor, noise: dict[str, torch.Tensor], amp: bool
    ) -> dict[str, torch.Tensor]:
        """The seeds' outputs, each (S, B, K, H, W), for images (S, B, 3, H, W)."""

        def one(params, buffers, image, noise):
            return functional_call(self.skeleton, (params, buffers, noise), (image,))

        with autocast(images.device, amp):
            return vmap(one)(self.params, self.buffers, images, noise)

    def find_noise_order(self, image: torch.Tensor, amp: bool) -> None:
        """The dropout layers in the order a training forward of `image` (B, 3, H, W)
        calls them, with their p and the noise's shape and dtype: one forward of a copy."""
        probe = copy.deepcopy(self.models[0]).train()
        called: list[tuple[str, float, torch.Size, torch.dtype]] = []
        for name, module in probe.named_modules():
            if isinstance(module, DROPOUTS) and name in self.dropouts:
                module.register_forward_pre_hook(_recorder(name, module, called))
        devices = [image.device] if image.is_cuda else []
        with torch.random.fork_rng(devices=devices), torch.no_grad(), autocast(image.device, amp):
            probe(image)
        self.noise_order = called

    def draw_noise(self, rng: SeedRng, device: torch.device) -> dict[str, torch.Tensor]:
        """Every dropout's noise, (S, ...) per layer, each seed's drawn from its own state."""
        assert self.noise_order is not None
        drawn: dict[str, list[torch.Tensor]] = {f"{n}.{NOISE}": [] for n in self.dropouts}
        for s in range(self.size):
            with rng.torch_of(s, device):
                for name, p, shape, dtype in self.noise_order:
                    noise = torch.empty(shape, dtype=dtype, device=device)
                    drawn[f"{name}.{NOISE}"].append(noise.bernoulli_(1 - p).div_(1 - p))
        ones = torch.ones((self.size,), device=device)  # a layer not called, or p == 0
        return {k: torch.stack(v) if v else ones for k, v in drawn.items()}

    @torch.no_grad()
    def unstack(self) -> None:
        """Each seed's slice of the stacked weights and buffers into its own model."""
        for s, model in enumerate(self.models):
            for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
                source = self.params.get(name, self.buffers.get(name))
                tensor.copy_(source[s])

    def optimizer(self, lr: float, momentum: float, weight_decay: float) -> torch.optim.SGD:
        """SGD over the stacked trainable parameters (frozen ones get no update)."""
        params = [self.params[n] for n in self.trainable]
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def load_momentum(self, stacked: torch.optim.SGD, optimizers: list[torch.optim.SGD]) -> None:
        """The seeds' momentum buffers (resumed runs) stacked into `stacked`'s state."""
        for i, name in enumerate(self.trainable):
            buffers = [_momentum(opt, i) for opt in optimizers]
            if all(b is not None for b in buffers):
                stacked.state[self.params[name]]["momentum_buffer"] = torch.stack(buffers)

    def store_momentum(self, stacked: torch.optim.SGD, optimizers: list[torch.optim.SGD]) -> None:
        """Seed s's slice of `stacked`'s momentum and its lr into optimizers[s], as its own
        run's optimizer would hold them (for its checkpoint)."""
        lr = stacked.param_groups[0]["lr"]
        for s, opt in enumerate(optimizers):
            opt.param_groups[0]["lr"] = lr
            params = opt.param_groups[0]["params"]
            for i, name in enumerate(self.trainable):
                buffer = stacked.state.get(self.params[name], {}).get("momentum_buffer")
                if buffer is not None:
                    opt.state[params[i]]["momentum_buffer"] = buffer[s].detach().clone()


def _momentum(opt: torch.optim.SGD, i: int) -> torch.Tensor | None:
    param = opt.param_groups[0]["params"][i]
    return opt.state.get(param, {}).get("momentum_buffer")


def _swap_dropouts(model: nn.Module) -> list[str]:
    """Replace every dropout layer of `model` by a SeedDropout; their names."""
    swapped = []
    for name, module in list(model.named_modules()):
        if isinstance(module, DROPOUTS):
            parent, _, leaf = name.rpartition(".")
            setattr(model.get_submodule(parent), leaf, SeedDropout(module.p))
            swapped.append(name)
    return swapped


def _recorder(name: str, module: nn.Module, called: list) -> Any:
    def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        if module.p == 0:
            return  # F.dropout draws nothing when p == 0
        feature = isinstance(module, nn.Dropout2d)
        shape = torch.Size([*x.shape[:2], *[1] * (x.dim() - 2)]) if feature else x.shape
        called.append((name, module.p, shape, x.dtype))

    return record
