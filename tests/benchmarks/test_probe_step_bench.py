"""pytest-benchmark: one training step of every head at the probes' model, and where it goes.

The model, batch and loss are experiments/probes.yaml's (96 px images, the ResNet stem of
width 8, a head of 32 channels, batch 8, its train.loss_resolution), with every head of
the capability suite at its probe parameters and its gate open; one forward, loss,
backward and SGD step per call, on the CPU, THREADS threads (default 1, the share of
one `--jobs auto` process on a 2-core machine). Each result's extra_info holds the
forward's MACs (attnbench.measure.flops) and the median step time; at the end of the
session a table prints ms per step, the ratio to `none`, and the forward GMACs beside
them, then with ATTNBENCH_BENCH_PROFILE=1 each head's op-level profile (torch.profiler,
self CPU time, by op and input shape), which says where a head's extra time goes.

    pytest tests/benchmarks/test_probe_step_bench.py --benchmark-only -s
    ATTNBENCH_BENCH_PROFILE=1 pytest tests/benchmarks/test_probe_step_bench.py --benchmark-only -s
    ATTNBENCH_BENCH_HEADS=none,danet ATTNBENCH_BENCH_SET=train.loss_resolution=head ...

ATTNBENCH_BENCH_SET takes `key=value` overrides separated by ";" (e.g. the full-resolution
loss, for the paired comparison in docs/performance.md). Whole-process figures (the
allocator, --jobs) are measured as docs/performance.md says, not here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from attnbench import allocator
from attnbench.experiment.config import load_config
from attnbench.measure.flops import count_macs
from attnbench.model.segmenter import build_model
from attnbench.train.loop import build_optimizer, train_one_iteration

REPO = Path(__file__).resolve().parents[2]
HEADS = {
    "none": ("none", {}),
    "pool": ("pool", {}),
    "a2": ("a2", {}),
    "ema": ("ema", {"bases": 16}),
    "ccnet": ("ccnet", {}),
    "nonlocal": ("nonlocal", {}),
    "isa": ("isa", {"down_factor": [4, 4]}),
    "danet": ("danet", {}),
}
CHOSEN = [h for h in os.environ.get("ATTNBENCH_BENCH_HEADS", ",".join(HEADS)).split(",") if h]
THREADS = int(os.environ.get("ATTNBENCH_BENCH_THREADS", "1"))
ROUNDS = int(os.environ.get("ATTNBENCH_BENCH_ROUNDS", "30"))
OVERRIDES = [s for s in os.environ.get("ATTNBENCH_BENCH_SET", "").split(";") if s]
PROFILE = os.environ.get("ATTNBENCH_BENCH_PROFILE") == "1"
RESULTS: dict[str, dict[str, float]] = {}
PROFILES: dict[str, str] = {}


@pytest.fixture(scope="module")
def probe() -> Iterator[dict[str, Any]]:
    allocator.keep_freed_memory()  # as the CLI does
    cfg = load_config(REPO / "experiments" / "probes.yaml", OVERRIDES)
    size = cfg.data.image_size
    g = torch.Generator().manual_seed(0)
    images = torch.randn(cfg.train.batch_size, 3, size, size, generator=g)  # (B, 3, H, W)
    labels = torch.randint(0, 5, (cfg.train.batch_size, size, size), generator=g)  # (B, H, W)
    yield {"cfg": cfg, "images": images, "labels": labels}
    print(_table())  # after the module's last head (shown with -s)


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, probe: dict[str, Any]):
    t = probe["cfg"].train
    return lambda: train_one_iteration(
        model,
        optimizer,
        probe["images"],
        probe["labels"],
        lr=t.lr * 0.1,
        aux_weight=0.4,
        resolution=t.loss_resolution,
    )


@pytest.mark.parametrize("head", CHOSEN)
def test_probe_train_step(benchmark, probe: dict[str, Any], head: str) -> None:
    module, params = HEADS[head]
    cfg = probe["cfg"]
    saved = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        torch.manual_seed(0)
        model = build_model(cfg.model, 5, module, params, open_gate=True)
        macs = count_macs(model, probe["images"])
        step = _step(model.train(), build_optimizer(model, cfg), probe)
        benchmark.pedantic(step, rounds=ROUNDS, warmup_rounds=3)
        if PROFILE:
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(5):
                    step()
            table = prof.key_averages(group_by_input_shape=True).table(
                sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=36
            )
            PROFILES[head] = table
    finally:
        torch.set_num_threads(saved)
    median_ms = benchmark.stats.stats.median * 1e3
    benchmark.group = f"probe train step, {THREADS} thread(s), {cfg.train.loss_resolution} loss"
    benchmark.extra_info.update(
        {"head": head, "forward_macs": macs.total, "median_ms": median_ms,
         "threads": THREADS, "torch": torch.__version__, "malloc": allocator.setting()}
    )  # fmt: skip
    RESULTS[head] = {"ms": median_ms, "gmacs": macs.total / 1e9}


def _table() -> str:
    """ms per step of the heads timed, their ratio to `none`, forward GMACs; the profiles."""
    base = RESULTS.get("none", {}).get("ms")
    lines = ["", "| head | ms / step | / none | forward GMACs |", "|---|---|---|---|"]
    for head, r in RESULTS.items():
        ratio = f"{r['ms'] / base:.2f}" if base else "-"
        lines.append(f"| {head} | {r['ms']:.1f} | {ratio} | {r['gmacs']:.3f} |")
    for head, table in PROFILES.items():
        lines.append(f"\n{head}: op-level profile of 5 steps\n{table}")
    return "\n".join(lines)
