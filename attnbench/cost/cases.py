"""One profiling case: build a module (alone) or the shared head around it, then
count, measure and time it. Rows come out in the tidy long format of cost/profile.py."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

import modules

from ..measure.flops import count_macs, eval_mode, flop_counter_count
from ..measure.memory import SAVED, inference_memory, saved_tensor_bytes, training_memory
from ..measure.timing import Latency, inference_step, time_callable, training_step

MB = 2**20


@dataclass(frozen=True)
class Case:
    """What to build: `scope` "module" (C -> C) or "head" (in_channels -> num_classes)."""

    scope: str
    module: str
    height: int
    width: int
    channels: int
    params: tuple[tuple[str, Any], ...] = ()
    in_channels: int = 2048
    num_classes: int = 21
    batch: int = 1

    @property
    def setting(self) -> str:
        return ",".join(f"{k}={v}" for k, v in self.params)

    @property
    def label(self) -> str:
        extra = f"[{self.setting}]" if self.setting else ""
        return f"{self.scope}:{self.module}{extra}@{self.height}x{self.width}"


@dataclass(frozen=True)
class RunEnv:
    """The machine and numerics every row carries."""

    device: torch.device
    dtype: torch.dtype
    device_name: str
    threads: int
    torch_version: str = torch.__version__

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    @property
    def slug(self) -> str:
        """A file-name tag for non-CPU runs, e.g. 'cuda_nvidia-h100-80gb-hbm3'."""
        name = re.sub(r"[^a-z0-9]+", "-", self.device_name.lower()).strip("-")
        return f"{self.device.type}_{name}"


@dataclass
class Measured:
    """Rows of one case, plus the op names fvcore could not count."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    unsupported: dict[str, int] = field(default_factory=dict)


def build(
    case: Case, env: RunEnv, dtype: torch.dtype | None = None
) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    """(model, its context module, an input) on the run's device and dtype."""
    dtype = dtype or env.dtype
    context = modules.build(case.module, case.channels, **dict(case.params))
    if case.scope == "head":
        from ..model.head import SegHead

        model: nn.Module = SegHead(case.in_channels, case.channels, case.num_classes, context)
        width = case.in_channels
    else:
        model, width = context, case.channels
    model = model.to(env.device, dtype)
    x = torch.randn(case.batch, width, case.height, case.width, device=env.device, dtype=dtype)
    return model, context, x


def row(
    case: Case, env: RunEnv, metric: str, value: float, unit: str, method: str
) -> dict[str, Any]:
    return {
        "scope": case.scope,
        "module": case.module,
        "setting": case.setting,
        "batch": case.batch,
        "channels": case.in_channels if case.scope == "head" else case.channels,
        "height": case.height,
        "width": case.width,
        "metric": metric,
        "value": value,
        "unit": unit,
        "method": method,
        "device": env.device.type,
        "device_name": env.device_name,
        "dtype": env.dtype_name,
        "torch": env.torch_version,
        "threads": env.threads,
    }


FVCORE = "fvcore + attnbench.measure.flops handles, eval mode"
COUNTER = "torch.utils.flop_counter FLOPs / 2 (convs and matrix products only)"
TIMER = "torch.utils.benchmark.Timer"


@dataclass(frozen=True)
class Budget:
    """How long each latency measurement may take, and its sample limits."""

    seconds: float = 1.0
    min_samples: int = 3
    max_samples: int = 50

    def time(self, fn: Callable[[], Any]) -> Latency:
        return time_callable(
            fn, budget_s=self.seconds, min_samples=self.min_samples, max_samples=self.max_samples
        )


def count_rows(
    case: Case, env: RunEnv, out: Measured, built: tuple[nn.Module, nn.Module, torch.Tensor]
) -> int:
    """MAC rows (fvcore and the formula); returns the fvcore total. Counted in float32
    (the trace runs the model once; half precision has no CPU kernels for everything)."""
    model, context, x = built if env.dtype == torch.float32 else build(case, env, torch.float32)
    count = count_macs(model, x)
    out.unsupported = count.unsupported
    add = out.rows.append
    add(row(case, env, "macs", count.total, "MACs", FVCORE))
    add(row(case, env, "macs_matrix", count.matrix, "MACs", FVCORE + "; convs and matrix products"))
    add(row(case, env, "macs_other", count.other, "MACs", FVCORE + "; softmax, norms, elementwise"))
    add(row(case, env, "unsupported_ops", sum(count.unsupported.values()), "ops", FVCORE))
    with eval_mode(model):  # the mode fvcore counts (Hamburger's step count depends on it)
        formula = context.macs(case.height, case.width) * case.batch
    name = "macs_formula" if case.scope == "module" else "macs_module_formula"
    add(row(case, env, name, formula, "MACs", "the module's docstring formula, macs(h, w)"))
    return count.total


def measure_case(case: Case, env: RunEnv, budget: Budget) -> Measured:
    """Everything the paper table shows for one case."""
    out = Measured()
    add = out.rows.append
    built = build(case, env)
    macs = count_rows(case, env, out, built)
    model, _, x = built
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    add(row(case, env, "params", params, "count", "all parameters (frozen included)"))
    add(row(case, env, "params_trainable", trainable, "count", "parameters with requires_grad"))

    with eval_mode(model):
        forward = flop_counter_count(model, x)
        add(row(case, env, "macs_flop_counter", forward.macs, "MACs", COUNTER + "; forward"))
        mem = inference_memory(model, x)
        add(row(case, env, "mem_infer_mb", mem.bytes / MB, "MB", mem.kind))
        lat = budget.time(inference_step(model, x))
    add_latency(case, env, out, "infer", lat, macs)

    model.train()
    x.requires_grad_(True)  # in a network the module's input is an activation
    saved = saved_tensor_bytes(model, x)
    add(row(case, env, "mem_saved_mb", saved / MB, "MB", SAVED))
    mem = training_memory(model, x)
    add(row(case, env, "mem_train_mb", mem.bytes / MB, "MB", mem.kind + "; forward + backward"))
    backward = flop_counter_count(model, x, backward=True)
    add(row(case, env, "macs_train_flop_counter", backward.macs, "MACs", COUNTER + "; fwd + bwd"))
    lat = budget.time(training_step(model, x))
    add_latency(case, env, out, "train", lat, backward.macs)
    return out


def add_latency(case: Case, env: RunEnv, out: Measured, kind: str, lat: Latency, macs: int) -> None:
    what = "forward, eval, no grad" if kind == "infer" else "forward + backward, train mode"
    method = f"{TIMER}; {what}; {lat.samples} samples of {lat.number} call(s)"
    add = out.rows.append
    add(row(case, env, f"lat_{kind}_ms", lat.median_s * 1e3, "ms", method + "; median"))
    add(row(case, env, f"lat_{kind}_iqr_ms", lat.iqr_s * 1e3, "ms", method + "; IQR"))
    add(row(case, env, f"lat_{kind}_samples", lat.samples, "count", method))
    counted = "fvcore MACs" if kind == "infer" else "flop_counter fwd+bwd MACs"
    # Raw MACs per second; the report divides by the run's peak (see cost/report.py).
    add(row(case, env, f"macs_per_s_{kind}", macs / lat.median_s, "MACs/s", f"{counted}; median"))


def measure_sweep_point(case: Case, env: RunEnv, budget: Budget) -> Measured:
    """The sweep's figures for one size: MACs, memory, inference latency."""
    out = Measured()
    add = out.rows.append
    built = build(case, env)
    count_rows(case, env, out, built)
    model, _, x = built
    with eval_mode(model):
        mem = inference_memory(model, x)
        add(row(case, env, "mem_infer_mb", mem.bytes / MB, "MB", mem.kind))
        lat = budget.time(inference_step(model, x))
    add(row(case, env, "lat_infer_ms", lat.median_s * 1e3, "ms", f"{TIMER}; median"))
    add(row(case, env, "lat_infer_iqr_ms", lat.iqr_s * 1e3, "ms", f"{TIMER}; IQR"))
    model.train()
    x.requires_grad_(True)
    add(row(case, env, "mem_saved_mb", saved_tensor_bytes(model, x) / MB, "MB", SAVED))
    if env.device.type == "cuda":  # cheap there; on the CPU the profiler pass is not
        mem = training_memory(model, x)
        add(row(case, env, "mem_train_mb", mem.bytes / MB, "MB", mem.kind))
    return out


__all__ = ["Budget", "Case", "Measured", "RunEnv", "build", "measure_case", "measure_sweep_point"]
