"""The training loop of a seed batch: loop.py's loop, with S seeds in every step.

Each seed is a seat: its run, its own model (which receives the stacked weights
before an evaluation or a checkpoint), its run's optimizer (the checkpoint's format),
its TrainState, its batches and its RNG states. Everything a seed writes is what its
own run writes, through loop.py's functions, in its own run folder: the log, the
evaluation points, checkpoints/last.pt (which either path resumes). A seed whose loss
stops being finite is marked diverged at the log interval where its own run would
stop; its slice keeps being computed (the slices never mix) and nothing more of it is
written or scored.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.data import Dataset

from .. import distributed
from ..env import autocast
from ..experiment.plan import Run
from ..progress import Progress
from . import checkpoint, loop
from .batched import SeedBatch, SeedRng, batched_kernels, seeded_rng_state
from .loop import Diverged, TrainResult, TrainState
from .loss import segmentation_loss


@dataclasses.dataclass
class Seat:
    """One seed of the batch."""

    run: Run
    model: nn.Module
    optimizer: torch.optim.SGD
    state: TrainState
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    outcome: TrainResult | Diverged | None = None

    @property
    def live(self) -> bool:
        return self.outcome is None


class _LossView:
    """What loop.log_interval asks of a progress bar, for one seat of a shared bar."""

    def __init__(self) -> None:
        self.loss = float("nan")

    def show_loss(self, loss: float) -> None:
        self.loss = loss

    def close(self) -> None:
        pass


def train_seed_batch(
    runs: list[Run], models: list[nn.Module], train_set: Dataset, val_set: Dataset,
    num_classes: int,
) -> tuple[list[TrainResult | Diverged], SeedRng]:  # fmt: skip
    """Train the runs' models (same head, same start iteration) together to
    cfg.train.iterations; each run's result (or its divergence), and their RNG states."""
    t = runs[0].cfg.train
    pairs = [_seat(run, model, train_set) for run, model in zip(runs, models, strict=True)]
    seats, rng = [seat for seat, _ in pairs], SeedRng([state for _, state in pairs])
    if len({seat.state.iteration for seat in seats}) != 1:
        raise ValueError("a seed batch starts all its runs at the same iteration")
    batch = SeedBatch(models)
    optimizer = batch.optimizer(t.lr, t.momentum, t.weight_decay)
    batch.load_momentum(optimizer, [seat.optimizer for seat in seats])
    val_loader = loop.validation_loader(runs[0], val_set)
    label = f"{runs[0].head.name} seeds {','.join(str(r.seed) for r in runs)}"
    progress = Progress(label, t.iterations, seats[0].state.iteration, True, runs=len(seats))
    for seat in seats:
        seat.state.tick = time.perf_counter()
        seat.state.window_start = (seat.state.iteration, seat.state.elapsed())
    for step in zip(*(seat.batches for seat in seats), strict=True):
        images = torch.stack([images for images, _ in step])  # (S, B, 3, H, W)
        labels = torch.stack([labels for _, labels in step])  # (S, B, H, W)
        lr = _step(batch, optimizer, seats, rng, images, labels)
        _log(seats, lr, progress)
        _evaluate_and_save(batch, optimizer, seats, rng, val_loader, num_classes)
        if not any(seat.live for seat in seats):
            break
    progress.close()
    batch.unstack()
    return [_outcome(seat) for seat in seats], rng


def _seat(run: Run, model: nn.Module, train_set: Dataset) -> tuple[Seat, dict]:
    """The run resumed (or started) as loop.train would, and the RNG states it leaves."""
    optimizer = loop.build_optimizer(model, run.cfg)
    fresh = not run.checkpoint_path.is_file()
    state = loop.resume(run, model, optimizer)  # sets the generators to the run's states
    rng = checkpoint_rng_state(run.seed, fresh)
    batches = iter(loop.device_batches(run, train_set, state.iteration))
    model.train()
    return Seat(run, model, optimizer, state, batches), rng


def checkpoint_rng_state(seed: int, fresh: bool) -> dict:
    """The generators' states now; python's and numpy's as seeding left them on a fresh start."""
    state = checkpoint.rng_state()
    return {**state, **seeded_rng_state(seed)} if fresh else state


def _step(
    batch: SeedBatch,
    optimizer: torch.optim.SGD,
    seats: list[Seat],
    rng: SeedRng,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> float:
    """One SGD step of every seed (loop.train_one_iteration, S times at once); its lr."""
    run = seats[0].run
    t = run.cfg.train
    # The poly schedule in closed form; the per-run path's PolynomialLR gives the same
    # rates to float rounding.
    lr = t.lr * (1 - seats[0].state.iteration / t.iterations) ** t.poly_power
    for group in optimizer.param_groups:
        group["lr"] = lr
    if batch.noise_order is None:
        batch.find_noise_order(images[0], t.amp)
    noise = batch.draw_noise(rng, images.device)
    aux_weight = run.cfg.model.head.aux_weight
    with batched_kernels(images.device):
        outputs = batch.forward(images, noise, t.amp)  # each (S, B, K, H, W)
        with autocast(images.device, t.amp):
            losses = [
                segmentation_loss({k: v[s] for k, v in outputs.items()}, labels[s], aux_weight)
                for s in range(len(seats))
            ]
        optimizer.zero_grad(set_to_none=True)
        sum(loss for loss, seat in zip(losses, seats, strict=True) if seat.live).backward()
    optimizer.step()
    for seat, loss in zip(seats, losses, strict=True):
        seat.state.loss_sum = seat.state.loss_sum + loss.detach().float()
        seat.state.loss_count += 1
        seat.state.iteration += 1
    return lr


def _log(seats: list[Seat], lr: float, progress: Progress) -> None:
    """Each live seat's log interval (loop.log_interval); the bar shows their mean loss."""
    t = seats[0].run.cfg.train
    done = seats[0].state.iteration
    if done % t.log_interval == 0 or done == t.iterations:
        views = []
        for seat in (seat for seat in seats if seat.live):
            view = _LossView()
            try:
                loop.log_interval(seat.run, seat.state, lr, view)  # type: ignore[arg-type]
            except Diverged as err:
                seat.outcome = err
                continue
            views.append(view.loss)
        if views:
            progress.show_loss(sum(views) / len(views))
    progress.update(done, lr)


def _evaluate_and_save(
    batch: SeedBatch,
    optimizer: torch.optim.SGD,
    seats: list[Seat],
    rng: SeedRng,
    val_loader: torch.utils.data.DataLoader,
    num_classes: int,
) -> None:
    """Evaluations and checkpoints of the live seats, when loop.train would make them."""
    t = seats[0].run.cfg.train
    done = seats[0].state.iteration
    is_eval = t.eval_interval and done % t.eval_interval == 0 and done < t.iterations
    is_checkpoint = done % t.checkpoint_interval == 0 or done == t.iterations
    if not (is_eval or is_checkpoint):
        return
    live = [(s, seat) for s, seat in enumerate(seats) if seat.live]
    for _, seat in live:
        seat.state.train_time_s = seat.state.elapsed()
    batch.unstack()
    if is_checkpoint:
        batch.store_momentum(optimizer, [seat.optimizer for seat in seats])
    for s, seat in live:
        with rng.of(s):
            if is_eval:
                loop.evaluate_during_training(
                    seat.run, seat.model, val_loader, num_classes, seat.state
                )
            if is_checkpoint:
                loop.save(seat.run, seat.model, seat.optimizer, seat.state)
        seat.model.train()
    for _, seat in live:
        seat.state.tick = time.perf_counter()


def _outcome(seat: Seat) -> TrainResult | Diverged:
    """The seat's divergence, or its TrainResult as loop.train returns it."""
    if isinstance(seat.outcome, Diverged):
        return seat.outcome
    distributed.broadcast_buffers(seat.model)
    state = seat.state
    return TrainResult(
        iterations=seat.run.cfg.train.iterations,
        train_time_s=state.train_time_s,
        wall_time_s=state.wall(),
        curve=state.curve,
        window_rates=state.window_rates,
        cuda_peak_bytes=None,
        cuda_warmup_peak_bytes=None,
    )
