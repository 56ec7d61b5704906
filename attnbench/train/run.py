"""One (head, seed) run: build the model, measure its costs, train, evaluate, write metrics.json."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import distributed, env, files
from ..experiment.config import dump_config
from ..experiment.plan import Run, run_config
from ..measure import head_costs
from ..model.receptive_field import receptive_field
from ..model.segmenter import build_model
from . import checkpoint
from .diagnostics import knocked_out, long_range_miou, switched_on
from .evaluate import evaluate
from .loop import Diverged, TrainResult, log_event, train, validation_loader
from .throughput import steady_throughput


@dataclass
class Started:
    """A run set up to train: its model (on the device), its cost figures, its identity."""

    model: nn.Module
    figures: dict[str, Any]
    base: dict[str, Any]


def run_one(run: Run, train_set: Any, val_set: Any, class_names: tuple[str, ...]) -> dict[str, Any]:
    """Train (or resume) one run, evaluate it, and write its metrics.json."""
    started = start_run(run, train_set, len(class_names))
    try:
        result = train(run, started.model, train_set, val_set, len(class_names))
    except Diverged as err:
        return record_divergence(run, started, err)
    return finish_run(run, started, result, val_set, class_names)


def start_run(run: Run, train_set: Any, num_classes: int) -> Started:
    """The run's files, its seeded model on the device, and its costs (before training)."""
    spec = run.head
    if run.dist.is_main:
        _write_run_files(run)
    env.seed_everything(run.seed)
    open_gate = spec.gate == "open"
    model = build_model(run.cfg.model, num_classes, spec.module, spec.params, open_gate=open_gate)
    figures = measure_costs(run, model, train_set)
    model, sync_bn = _place(run, model)
    return Started(model, figures, _identity(run, sync_bn))


def record_divergence(run: Run, started: Started, err: Diverged) -> dict[str, Any]:
    """The metrics.json of a run whose loss stopped being finite."""
    log_event(run, {"event": "diverged", "iteration": err.iteration, "loss": err.loss})
    metrics = {
        **started.base,
        "status": "diverged",
        "diverged_at": err.iteration,
        "error": str(err),
        **started.figures,
    }
    _write_metrics(run, metrics)
    return metrics


def finish_run(
    run: Run, started: Started, result: TrainResult, val_set: Any, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Score the trained model, run the sweeps, and write the run's metrics.json."""
    model, figures, base = started.model, started.figures, started.base
    hashes = distributed.all_gather_object(checkpoint.state_hash(model.state_dict()))
    val_loader = validation_loader(run, val_set)
    final = score(run, model, val_loader, class_names)
    final.update(final_diagnostics(run, model, val_loader, val_set))
    summary = {k: final[k] for k in ("mIoU", "pixel_acc", "mean_acc")}
    recorded = ("long_range_mIoU", "engagement", "gate_effect")
    diagnostics = {k: final[k] for k in recorded if k in final}
    log_event(run, {"event": "final", "iteration": result.iterations, **summary, **diagnostics})
    sweep = evaluation_sweep(run, model, val_loader, class_names)
    sweep += knockout_evaluation(run, model, val_loader, class_names)
    if result.cuda_peak_bytes is not None:
        figures.update(head_costs.cuda_training_memory(result.cuda_peak_bytes))
        figures["train_memory_warmup_mb"] = (result.cuda_warmup_peak_bytes or 0) / 2**20
    metrics = {
        **base,
        "status": "finished",
        **final,
        **_training_figures(run, result),
        **figures,
        "eval": {
            "scales": list(run.cfg.eval.scales),
            "flip": run.cfg.eval.flip,
            "mode": run.cfg.eval.mode,
            "slide": run.cfg.sliding_window(),  # (window, stride), or None: whole images
        },
        "curve": [*result.curve, {"iteration": result.iterations, **summary}],
        "sweep": sweep,
        "weights_sha256_by_rank": hashes,
    }
    _write_metrics(run, metrics)
    return metrics


def final_diagnostics(
    run: Run, model: nn.Module, val_loader: Any, val_set: Any
) -> dict[str, float]:
    """Engagement, the gate effect (a module with gates) and, on the probes, how far the
    trained head sees (train/diagnostics.py, model/receptive_field.py)."""
    figures = switched_on(model, val_loader, run.cfg.train.amp)
    if getattr(val_set, "long_range_classes", ()):
        field = receptive_field(model, run.cfg.data.image_size)
        figures["receptive_field_px"], figures["effective_receptive_field_px"] = field
    return figures


def measure_costs(run: Run, model: nn.Module, train_set: Any) -> dict[str, Any]:
    """Parameters and MACs, and on CPU the training memory, at the training resolution.

    The costs use copies and their own RNG streams: training is the same with or without.
    Every rank measures: a training forward of EMA all-reduces, and would wait forever
    for ranks that do not take part.
    """
    with torch.random.fork_rng(devices=[]):
        image = train_set[0][0]  # (3, H, W) at the training resolution
    figures = head_costs.static_costs(model, tuple(image.shape[-2:]))
    if run.device.type != "cuda":
        per_rank = run.cfg.train.batch_size // run.dist.world_size
        batch = image.unsqueeze(0).expand(per_rank, -1, -1, -1).contiguous()
        figures.update(head_costs.cpu_training_memory(model, batch))
    return figures


def _place(run: Run, model: nn.Module) -> tuple[nn.Module, bool]:
    """`model` on the run's device and memory format, and whether its BN is synchronised."""
    sync_bn = run.dist.enabled and run.cfg.train.sync_bn and run.device.type == "cuda"
    if sync_bn:
        # torch's SyncBatchNorm runs on GPUs only; on CPU each rank normalises its own
        # slice and DDP broadcasts rank 0's running statistics.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(run.device)
    if run.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, sync_bn


def _identity(run: Run, sync_bn: bool) -> dict[str, Any]:
    """What every metrics.json starts with: which run this is, and how it ran."""
    return {
        "experiment": run.cfg.name,
        "head": run.head.name,
        "module": run.head.module,
        "gate": run.head.gate,
        "module_params": run.head.params,
        "seed": run.seed,
        "world_size": run.dist.world_size,
        "sync_bn": sync_bn,
        "device": str(run.device),
    }


def score(
    run: Run, model: nn.Module, val_loader: DataLoader, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """The evaluation recipe's scores, per class by name."""
    cfg = run.cfg
    scores = evaluate(
        model,
        val_loader,
        len(class_names),
        scales=cfg.eval.scales,
        flip=cfg.eval.flip,
        slide=cfg.sliding_window(),
        amp=cfg.train.amp,
    )
    long_range = long_range_miou(
        scores["iou"], getattr(val_loader.dataset, "long_range_classes", ())
    )
    return {
        "mIoU": scores["mIoU"],
        "pixel_acc": scores["pixel_acc"],
        "mean_acc": scores["mean_acc"],
        **({"long_range_mIoU": long_range} if long_range is not None else {}),
        "iou": dict(zip(class_names, scores["iou"], strict=True)),
        "acc": dict(zip(class_names, scores["acc"], strict=True)),
    }


def evaluation_sweep(
    run: Run, model: nn.Module, val_loader: DataLoader, class_names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The scores with eval.sweep_param of the context module set to each of sweep_values."""
    param, sweep = run.cfg.eval.sweep_param, []
    if not param or not hasattr(model.head.context, param):
        return sweep
    context = model.head.context
    original = getattr(context, param)
    for raw in run.cfg.eval.sweep_values:
        value = int(raw) if float(raw).is_integer() else raw
        setattr(context, param, value)
        point = {"setting": f"{param}={value}", "param": param, "value": value}
        point.update(score(run, model, val_loader, class_names))
        sweep.append(point)
        log_event(run, {"event": "sweep", "setting": point["setting"], "mIoU": point["mIoU"]})
    setattr(context, param, original)
    return sweep


def knockout_evaluation(
    run: Run, model: nn.Module, val_loader: DataLoader, class_names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """The scores with the context module replaced by the identity, when eval.knockout."""
    if not run.cfg.eval.knockout:
        return []
    with knocked_out(model):
        point = {"setting": "knockout", **score(run, model, val_loader, class_names)}
    log_event(run, {"event": "sweep", "setting": "knockout", "mIoU": point["mIoU"]})
    return [point]


def _training_figures(run: Run, result: TrainResult) -> dict[str, Any]:
    """Throughput over the steady log intervals (median, quartiles, range, contended), the
    training time (evaluations and checkpoints excluded) and the wall time apart."""
    seconds = result.train_time_s
    rates = result.window_rates
    if not rates and seconds:  # too short for a steady window: the run's mean rate
        rates = [result.iterations * run.cfg.train.batch_size / seconds]
    throughput = steady_throughput(rates)
    return {
        "iterations": result.iterations,
        "train_time_s": seconds,
        "wall_time_s": result.wall_time_s,
        **(throughput.as_metrics() if throughput else {"train_images_per_s": None}),
        "threads": torch.get_num_threads(),
    }


def _write_metrics(run: Run, metrics: dict[str, Any]) -> None:
    """metrics.json, written last: it marks the run as done."""
    if run.dist.is_main:
        files.atomic_write_json(run.folder.metrics, metrics)


def _write_run_files(run: Run) -> None:
    """config.yaml, and env.json (a resumed run keeps its first record and adds one)."""
    files.remove_stale_temporaries(run.run_dir)
    resolved = run_config(run.cfg, run.head, run.seed)
    header = f"# run {run.head.name} seed {run.seed} of experiment {run.cfg.name}\n"
    files.atomic_write_text(run.folder.config, header + dump_config(resolved))
    record = env.environment(run.device, run.dist, run.seed, run.cfg.train.amp)
    path = run.folder.env
    previous = files.read_json(path)
    if isinstance(previous, dict) and run.checkpoint_path.is_file():
        previous.setdefault("resumes", []).append(record)
        record = previous
    files.atomic_write_json(path, record)
