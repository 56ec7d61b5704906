"""pytest-benchmark: the runner's training step against a minimal loop, same model and batch.

The runner is attnbench.train.loop.train on the quick experiment's model and data (one
head, ITERATIONS iterations, a log interval of LOG, no evaluation, the final checkpoint
included); the minimal loop is forward, loss, backward and SGD step on one batch held
on the device, with no logging, no loss read and one synchronisation at the end. Both
report seconds per ITERATIONS steps; their ratio is the runner's overhead (goal on a
GPU: 1.25 at most).

    pytest tests/benchmarks/test_loop_bench.py --benchmark-only --benchmark-json loop.json
    ATTNBENCH_BENCH_HEAD=none pytest tests/benchmarks/test_loop_bench.py --benchmark-only
    ATTNBENCH_BENCH_ITERATIONS=20 ATTNBENCH_BENCH_ROUNDS=3 ...   (a shorter run, e.g. on CPU)

The ratio of the two medians is printed at the end of the session (and is in the JSON).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from attnbench import env
from attnbench.data import build_dataset
from attnbench.experiment.config import load_config
from attnbench.experiment.layout import RunFolder
from attnbench.experiment.plan import Run
from attnbench.model.segmenter import build_model
from attnbench.train.loop import build_optimizer, train
from attnbench.train.loss import segmentation_loss

REPO = Path(__file__).resolve().parents[2]
HEAD = os.environ.get("ATTNBENCH_BENCH_HEAD", "ema")
ITERATIONS = int(os.environ.get("ATTNBENCH_BENCH_ITERATIONS", "60"))
LOG = max(1, ITERATIONS // 3)
ROUNDS = int(os.environ.get("ATTNBENCH_BENCH_ROUNDS", "5"))
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
OVERRIDES = [
    f"train.iterations={ITERATIONS}",
    f"train.log_interval={LOG}",
    f"train.checkpoint_interval={ITERATIONS}",
    "train.eval_interval=0",
    "data.train_size=512",
    "data.val_size=16",
]
MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    cfg = load_config(REPO / "experiments" / "quick.yaml", OVERRIDES)
    train_set = build_dataset(cfg.data, "train", train=True)
    val_set = build_dataset(cfg.data, "val", train=False)
    train_set.render_all(show=False)
    return {"cfg": cfg, "spec": cfg.head(HEAD), "train": train_set, "val": val_set}


def _model(setup: dict[str, Any]) -> torch.nn.Module:
    spec = setup["spec"]
    torch.manual_seed(0)
    model = build_model(setup["cfg"].model, setup["train"].num_classes, spec.module, spec.params)
    model = model.to(DEVICE)
    return model.to(memory_format=torch.channels_last) if DEVICE.type == "cuda" else model


def _info(benchmark, setup: dict[str, Any], kind: str) -> None:
    benchmark.group = f"{ITERATIONS} training steps, quick, {HEAD}"
    benchmark.extra_info.update(
        {"loop": kind, "device": str(DEVICE), "threads": torch.get_num_threads(),
         "torch": torch.__version__, "batch": setup["cfg"].train.batch_size}
    )  # fmt: skip


def test_runner_steps(benchmark, setup: dict[str, Any], tmp_path: Path) -> None:
    cfg = setup["cfg"]
    folder = RunFolder(HEAD, 0, tmp_path / "run")
    run = Run(cfg, setup["spec"], 0, folder, device=DEVICE)

    def fresh() -> tuple[tuple, dict]:
        shutil.rmtree(run.run_dir, ignore_errors=True)  # no resume: every round trains
        return (run, _model(setup), setup["train"], setup["val"], 7), {}

    with env.numerics(DEVICE, cfg.train.threads):
        benchmark.pedantic(train, setup=fresh, rounds=ROUNDS, warmup_rounds=1)
    _info(benchmark, setup, "runner")
    MEDIANS["runner"] = benchmark.stats.stats.median


def test_minimal_steps(benchmark, setup: dict[str, Any]) -> None:
    cfg = setup["cfg"]
    model = _model(setup).train()
    optimizer = build_optimizer(model, cfg)
    images, labels = zip(*(setup["train"][i] for i in range(cfg.train.batch_size)), strict=True)
    images = torch.stack(images).to(DEVICE)  # (B, 3, H, W), held on the device
    labels = torch.stack(labels).to(DEVICE)  # (B, H, W)
    if DEVICE.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)

    def steps() -> None:
        for _ in range(ITERATIONS):
            with env.autocast(DEVICE, cfg.train.amp):
                loss = segmentation_loss(model(images), labels, cfg.model.head.aux_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if DEVICE.type == "cuda":
            torch.cuda.synchronize(DEVICE)

    with env.numerics(DEVICE, cfg.train.threads):
        benchmark.pedantic(steps, rounds=ROUNDS, warmup_rounds=1)
    _info(benchmark, setup, "minimal")
    MEDIANS["minimal"] = benchmark.stats.stats.median
    if "runner" in MEDIANS:
        ratio = MEDIANS["runner"] / MEDIANS["minimal"]
        benchmark.extra_info["runner_over_minimal"] = ratio
        print(f"\nrunner / minimal, median of {ROUNDS} rounds of {ITERATIONS} steps: {ratio:.2f}")
