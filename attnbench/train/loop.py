"""Iteration-based training and whole-image evaluation of one Segmenter.

The recipe (docs/modules.md, "The recipes"): SGD with momentum and weight
decay, poly learning-rate decay lr * (1 - it / iters) ** power, cross-entropy with
ignore index 255 on the main output plus `aux_weight` times the same loss on the
auxiliary output. Training is resumable: a checkpoint every `checkpoint_interval`
iterations and at the end holds all the state (see checkpoint.py), and the batches
depend only on (seed, iteration) (see sampling.py), so a killed run that is
started again finishes exactly as an uninterrupted one would on CPU.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import PolynomialLR
from torch.utils.data import DataLoader, Dataset

from .. import distributed, files
from ..data import sampling
from ..data.device_batches import (
    ResidentBatches,
    prefetched,
    release_device_copy,
    resident_fits,
)
from ..env import autocast
from ..experiment.config import ExperimentConfig
from ..experiment.plan import Run
from ..progress import Progress, say
from . import checkpoint
from .diagnostics import context_figures
from .evaluate import evaluate
from .loss import segmentation_loss


class Diverged(Exception):
    """The training loss stopped being a finite number."""

    def __init__(self, iteration: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at iteration {iteration}")
        self.iteration = iteration
        self.loss = loss


@dataclass
class TrainResult:
    iterations: int
    train_time_s: float  # training only: evaluations and checkpoints excluded
    wall_time_s: float  # everything train() did, evaluations and checkpoints included
    curve: list[dict[str, float]]  # {"iteration", "mIoU", ...} at every eval_interval
    window_rates: list[float]  # images/s of every steady log interval (see throughput.py)
    cuda_peak_bytes: int | None  # allocator peak after the first log interval
    cuda_warmup_peak_bytes: int | None  # ... and during it (cudnn.benchmark's trials)


def build_scheduler(
    optimizer: torch.optim.Optimizer, cfg: ExperimentConfig, done: int
) -> PolynomialLR:
    """torch's PolynomialLR: lr * (1 - it / iters) ** power at 0-based iteration `it`,
    stepped to `done` iterations (a resumed run's rates are those of a run never stopped)."""
    t = cfg.train
    for group in optimizer.param_groups:  # a resumed optimizer holds its last rate
        group["lr"] = group["initial_lr"] = t.lr
    scheduler = PolynomialLR(optimizer, total_iters=t.iterations, power=t.poly_power)
    with warnings.catch_warnings():  # stepped before optimizer.step(): on purpose, to resume
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(done):
            scheduler.step()
    return scheduler


def build_optimizer(model: nn.Module, cfg: ExperimentConfig) -> torch.optim.SGD:
    # Frozen parameters (e.g. EMA's conv1) get no update and no weight decay.
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    # foreach: one kernel per update op over all tensors, also on CPU, where the default
    # loops over them in Python; the same updates, bit for bit.
    return torch.optim.SGD(
        params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay, foreach=True
    )


def train_one_iteration(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    lr: float,
    aux_weight: float,
    amp: bool = False,
    resolution: str = "input",
) -> torch.Tensor:
    """One SGD step at learning rate `lr`; returns the (detached) loss of the batch. The
    loss is taken at the input's resolution, or with resolution "head" at the heads'."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(images.device, amp):
        # {"out": (B, K, H, W), "aux": ...}, or at the heads' (h, w) with resolution "head"
        outputs = model(images, upsample=False) if resolution == "head" else model(images)
        loss = segmentation_loss(outputs, labels, aux_weight)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def validation_loader(run: Run, val_set: Dataset) -> DataLoader:
    """This rank's share of the validation images, in a fixed order."""
    cfg, pin = run.cfg, run.device.type == "cuda"
    return sampling.eval_loader(val_set, cfg.eval.batch_size, cfg.data.num_workers, pin, run.dist)


@dataclass
class TrainState:
    """Where training stands: what a checkpoint holds besides the weights and the optimizer."""

    iteration: int = 0  # iterations done
    train_time_s: float = 0.0  # training time before `tick` (evaluations excluded)
    curve: list[dict[str, float]] = field(default_factory=list)
    # Losses since the last logged interval, summed on the device: reading a loss waits
    # for the GPU, so it is read once per log interval, not once per iteration.
    loss_sum: torch.Tensor | float = 0.0
    loss_count: int = 0
    cuda_peak_bytes: int = 0
    cuda_warmup_peak_bytes: int = 0
    wall_time_s: float = 0.0  # before this process's start
    window_rates: list[float] = field(default_factory=list)
    window_start: tuple[int, float] = (0, 0.0)  # (iteration, elapsed()) where it began
    warm: bool = False  # False until this process's first (warm-up) window is done
    tick: float = field(default_factory=time.perf_counter)  # when training last (re)started
    started: float = field(default_factory=time.perf_counter)  # when this process started

    def elapsed(self) -> float:
        return self.train_time_s + time.perf_counter() - self.tick

    def wall(self) -> float:
        return self.wall_time_s + time.perf_counter() - self.started


def train(
    run: Run, model: nn.Module, train_set: Dataset, val_set: Dataset, num_classes: int
) -> TrainResult:
    """Train `model` (already on run.device) to cfg.train.iterations, resuming if possible."""
    t = run.cfg.train
    optimizer = build_optimizer(model, run.cfg)
    state = resume(run, model, optimizer)
    scheduler = build_scheduler(optimizer, run.cfg, state.iteration)
    wrapped = wrap(run, model)
    batches = device_batches(run, train_set, state.iteration)
    val_loader = validation_loader(run, val_set)
    progress = Progress(run.label, t.iterations, state.iteration, show=run.dist.is_main)
    wrapped.train()
    state.tick = time.perf_counter()
    state.window_start = (state.iteration, state.elapsed())
    for images, labels in batches:
        train_step(run, wrapped, (optimizer, scheduler), state, images, labels, progress)
        done = state.iteration
        is_eval = t.eval_interval and done % t.eval_interval == 0 and done < t.iterations
        is_checkpoint = done % t.checkpoint_interval == 0 or done == t.iterations
        if is_eval or is_checkpoint:
            _synchronize(run.device)  # the clock stops when the queued steps are done
            state.train_time_s = state.elapsed()
            _track_cuda_peak(run, state)
            if is_eval:
                evaluate_during_training(run, model, val_loader, num_classes, state)
                _reset_cuda_peak(run.device)  # training memory leaves evaluation out
            if is_checkpoint:
                save(run, model, optimizer, state)
            state.tick = time.perf_counter()
    progress.close()
    # DDP gives every forward rank 0's buffers; after the last one they differ again.
    distributed.broadcast_buffers(model)
    _track_cuda_peak(run, state)
    cuda = run.device.type == "cuda"
    return TrainResult(
        iterations=t.iterations,
        train_time_s=state.train_time_s,
        wall_time_s=state.wall(),
        curve=state.curve,
        window_rates=state.window_rates,
        cuda_peak_bytes=(state.cuda_peak_bytes or state.cuda_warmup_peak_bytes) if cuda else None,
        cuda_warmup_peak_bytes=state.cuda_warmup_peak_bytes if cuda else None,
    )


def resume(run: Run, model: nn.Module, optimizer: torch.optim.Optimizer) -> TrainState:
    """The state of the run's checkpoint, loaded into model and optimizer; else a fresh start."""
    info = run.dist
    saved = checkpoint.load_checkpoint(run.checkpoint_path, info.rank, info.world_size)
    if saved is None:
        if info.is_main:
            # A fresh start over an old record (a finished run whose checkpoint is gone):
            # the old log and metrics must not mix with, or outlive, the new run's.
            run.folder.metrics.unlink(missing_ok=True)
            run.log_path.unlink(missing_ok=True)
        # Dropout differs between ranks; the data order does not depend on this generator.
        torch.manual_seed(sampling.derive_seed(run.seed, 1, info.rank))
        return TrainState()
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    loss_sum, loss_count = saved["loss_window"]
    state = TrainState(
        iteration=saved["iteration"],
        train_time_s=saved["train_time_s"],
        curve=saved["curve"],
        loss_sum=loss_sum,
        loss_count=loss_count,
        cuda_peak_bytes=saved.get("cuda_peak_bytes") or 0,
        cuda_warmup_peak_bytes=saved.get("cuda_warmup_peak_bytes") or 0,
        wall_time_s=saved.get("wall_time_s", 0.0),
        window_rates=list(saved.get("window_rates", [])),
    )
    if info.is_main:
        _truncate_log(run.log_path, state.iteration)
    return state


def wrap(run: Run, model: nn.Module) -> nn.Module:
    """The module that trains: DDP around `model` under several processes, else `model`."""
    wrapped = model
    if run.dist.enabled:
        device_ids = [run.device.index] if run.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    return wrapped


def device_batches(
    run: Run, train_set: Dataset, start: int, *, resident: bool | None = None
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's slice of the batches of iterations start, ..., iterations - 1, on the
    device. resident None: the data set lives on the device (a GPU, or the CPU's own
    memory) when it can (device_batches.py); the batches are the same either way."""
    t = run.cfg.train
    batches = sampling.IterationBatches(
        len(train_set), t.batch_size, run.seed, start, t.iterations, run.dist
    )
    if resident is None:
        resident = resident_fits(train_set, run.device)
    if resident:
        try:
            return ResidentBatches(train_set, batches, run.seed, run.device, run.channels_last)
        except torch.cuda.OutOfMemoryError:  # torch.OutOfMemoryError only from torch 2.5
            # `--jobs` siblings can fill the device between resident_fits and the copy.
            # The loader gives the same batches, so only the speed changes.
            say("training images: no room on the device for them; drawn batch by batch")
    release_device_copy()  # outside the except: its traceback would keep a part of the copy
    loader = sampling.train_loader(
        train_set, batches, run.seed, run.cfg.data.num_workers, run.device.type == "cuda"
    )
    return prefetched(loader, run.device, run.channels_last)


def train_step(
    run: Run,
    wrapped: nn.Module,
    stepping: tuple[torch.optim.Optimizer, PolynomialLR],
    state: TrainState,
    images: torch.Tensor,
    labels: torch.Tensor,
    progress: Progress,
) -> None:
    """The loop body: one iteration on this batch (already on the device); the losses
    are read, checked and logged once per log interval. `stepping`: the optimizer and its
    learning-rate scheduler."""
    t = run.cfg.train
    optimizer, scheduler = stepping
    lr = scheduler.get_last_lr()[0]
    aux_weight = run.cfg.model.head.aux_weight
    step = {"lr": lr, "aux_weight": aux_weight, "amp": t.amp, "resolution": t.loss_resolution}
    loss = train_one_iteration(wrapped, optimizer, images, labels, **step)
    scheduler.step()
    state.loss_sum = state.loss_sum + loss.float()
    state.loss_count += 1
    state.iteration += 1
    done = state.iteration
    if done % t.log_interval == 0 or done == t.iterations:
        log_interval(run, state, lr, progress)
    progress.update(done, lr)


def log_interval(run: Run, state: TrainState, lr: float, progress: Progress) -> None:
    """Read the interval's mean loss (a sync), check it, log it, time the window."""
    total = distributed.all_reduce_mean(torch.as_tensor(state.loss_sum, dtype=torch.float32))
    mean_loss = float(total) / state.loss_count
    done = state.iteration
    if not math.isfinite(mean_loss):
        progress.close()
        raise Diverged(done, mean_loss)
    elapsed = state.elapsed()
    first, began = state.window_start
    if state.warm and elapsed > began:
        state.window_rates.append((done - first) * run.cfg.train.batch_size / (elapsed - began))
    state.warm = True
    _track_cuda_peak(run, state)
    state.window_start = (done, elapsed)
    progress.show_loss(mean_loss)
    record = {"iteration": done, "loss": mean_loss, "lr": lr, "time_s": round(elapsed, 3)}
    log_event(run, {"event": "train", **record})
    state.loss_sum, state.loss_count = 0.0, 0


def evaluate_during_training(
    run: Run, model: nn.Module, val_loader: DataLoader, num_classes: int, state: TrainState
) -> None:
    """One point of the validation curve, logged."""
    distributed.broadcast_buffers(model)  # every rank evaluates rank 0's BN stats
    slide = run.cfg.sliding_window()
    scores = evaluate(model, val_loader, num_classes, slide=slide, amp=run.cfg.train.amp)
    long_range = getattr(val_loader.dataset, "long_range_classes", ())
    amp = run.cfg.train.amp
    extra = context_figures(model, val_loader, scores["iou"], long_range, amp)
    point = {"iteration": state.iteration, **_summary(scores), **extra}
    state.curve.append(point)
    log_event(run, {"event": "eval", **point})


def save(run: Run, model: nn.Module, optimizer: torch.optim.Optimizer, state: TrainState) -> None:
    """The checkpoint a killed run resumes from."""
    saved = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "iteration": state.iteration,
        "train_time_s": state.train_time_s,
        "curve": state.curve,
        "loss_window": (float(state.loss_sum), state.loss_count),
        "cuda_peak_bytes": state.cuda_peak_bytes,
        "cuda_warmup_peak_bytes": state.cuda_warmup_peak_bytes,
        "wall_time_s": state.wall(),
        "window_rates": state.window_rates,
        "world_size": run.dist.world_size,
    }
    checkpoint.save_checkpoint(run.checkpoint_path, saved, is_main=run.dist.is_main)


def _track_cuda_peak(run: Run, state: TrainState) -> None:
    """The allocator's peak so far, kept apart for the first window of the run, whose
    steps run cudnn.benchmark's trials (workspaces of every candidate algorithm); the
    peak restarts from there, so later figures hold steady steps (and evaluations)."""
    if run.device.type != "cuda":
        return
    peak = torch.cuda.max_memory_allocated(run.device)
    if state.cuda_warmup_peak_bytes == 0:
        state.cuda_warmup_peak_bytes = peak
        torch.cuda.reset_peak_memory_stats(run.device)
    else:
        state.cuda_peak_bytes = max(state.cuda_peak_bytes, peak)


def _reset_cuda_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _summary(scores: dict[str, Any]) -> dict[str, float]:
    return {k: scores[k] for k in ("mIoU", "pixel_acc", "mean_acc")}


def log_event(run: Run, record: dict[str, Any]) -> None:
    """Append one record to the run's log.jsonl (rank 0 only)."""
    if not run.dist.is_main:
        return
    run.log_path.parent.mkdir(parents=True, exist_ok=True)
    with run.log_path.open("a") as f:
        f.write(json.dumps(files.json_safe(record)) + "\n")


def _truncate_log(path: Path, iteration: int) -> None:
    """Drop records written after the checkpoint we resume from: they will be written again."""
    kept = [
        r
        for r in files.read_log(path)
        if r.get("event") in ("train", "eval") and r.get("iteration", 0) <= iteration
    ]
    files.atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
