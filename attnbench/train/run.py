"""One (head, seed) run: build the model, measure its costs, train, evaluate, write metrics.json."""

from __future__ import annotations

from typing import Any

import torch

from .. import distributed, env, files
from ..cost import head_costs
from ..experiment.config import dump_config
from ..experiment.plan import run_config
from . import checkpoint
from .evaluate import evaluate
from .loop import Diverged, RunSpec, log_event, train, validation_loader


def run_one(
    run: RunSpec, train_set: Any, val_set: Any, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Train (or resume) one run, evaluate it, and write its metrics.json."""
    from ..model.segmenter import build_model

    cfg, spec, info = run.cfg, run.head, run.dist
    num_classes = len(class_names)
    if info.is_main:
        _write_run_files(run)
    env.seed_everything(run.seed)
    model = build_model(cfg.model, num_classes, spec.module, spec.params)

    # The costs use copies and their own RNG streams: training is the same with or without.
    # Every rank measures: a training forward of EMA all-reduces, and would wait forever
    # for ranks that do not take part.
    with torch.random.fork_rng(devices=[]):
        image = train_set[0][0]  # (3, H, W) at the training resolution
    figures = head_costs.static_costs(model, tuple(image.shape[-2:]))
    if run.device.type != "cuda":
        per_rank = cfg.train.batch_size // info.world_size
        batch = image.unsqueeze(0).expand(per_rank, -1, -1, -1).contiguous()
        figures.update(head_costs.cpu_training_memory(model, batch))

    sync_bn = info.enabled and cfg.train.sync_bn and run.device.type == "cuda"
    if sync_bn:
        # torch's SyncBatchNorm runs on GPUs only; on CPU each rank normalises its own
        # slice and DDP broadcasts rank 0's running statistics.
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(run.device)
    if run.channels_last:
        model.to(memory_format=torch.channels_last)

    base = {
        "experiment": cfg.name,
        "head": spec.name,
        "module": spec.module,
        "module_params": spec.params,
        "seed": run.seed,
        "world_size": info.world_size,
        "sync_bn": sync_bn,
        "device": str(run.device),
    }
    try:
        result = train(run, model, train_set, val_set, num_classes)
    except Diverged as err:
        log_event(run, {"event": "diverged", "iteration": err.iteration, "loss": err.loss})
        metrics = {
            **base,
            "status": "diverged",
            "diverged_at": err.iteration,
            "error": str(err),
            **figures,
        }
        if info.is_main:
            files.atomic_write_json(run.run_dir / "metrics.json", metrics)
        return metrics

    hashes = distributed.all_gather_object(checkpoint.state_hash(model.state_dict()))
    val_loader = validation_loader(run, val_set)

    def score() -> dict[str, Any]:
        scores = evaluate(
            model,
            val_loader,
            num_classes,
            scales=cfg.eval.scales,
            flip=cfg.eval.flip,
            amp=cfg.train.amp,
        )
        return {
            "mIoU": scores["mIoU"],
            "pixel_acc": scores["pixel_acc"],
            "mean_acc": scores["mean_acc"],
            "iou": dict(zip(class_names, scores["iou"], strict=True)),
            "acc": dict(zip(class_names, scores["acc"], strict=True)),
        }

    final = score()
    summary = {k: final[k] for k in ("mIoU", "pixel_acc", "mean_acc")}
    log_event(run, {"event": "final", "iteration": result.iterations, **summary})
    sweep = []
    param = cfg.eval.sweep_param
    if param and hasattr(model.head.context, param):
        context = model.head.context
        original = getattr(context, param)
        for raw in cfg.eval.sweep_values:
            value = int(raw) if float(raw).is_integer() else raw
            setattr(context, param, value)
            point = {"setting": f"{param}={value}", "param": param, "value": value, **score()}
            sweep.append(point)
            log_event(run, {"event": "sweep", "setting": point["setting"], "mIoU": point["mIoU"]})
        setattr(context, param, original)

    if result.cuda_peak_bytes is not None:
        figures.update(head_costs.cuda_training_memory(result.cuda_peak_bytes))
    global_images = result.iterations * cfg.train.batch_size
    metrics = {
        **base,
        "status": "finished",
        **final,
        "iterations": result.iterations,
        "train_time_s": result.train_time_s,
        "train_images_per_s": global_images / result.train_time_s if result.train_time_s else None,
        **figures,
        "eval": {"scales": list(cfg.eval.scales), "flip": cfg.eval.flip},
        "curve": [*result.curve, {"iteration": result.iterations, **summary}],
        "sweep": sweep,
        "weights_sha256_by_rank": hashes,
    }
    if info.is_main:
        files.atomic_write_json(run.run_dir / "metrics.json", metrics)
    return metrics


def _write_run_files(run: RunSpec) -> None:
    """config.yaml, and env.json (a resumed run keeps its first record and adds one)."""
    files.remove_stale_temporaries(run.run_dir)
    resolved = run_config(run.cfg, run.head, run.seed)
    header = f"# run {run.head.name} seed {run.seed} of experiment {run.cfg.name}\n"
    files.atomic_write_text(run.run_dir / "config.yaml", header + dump_config(resolved))
    record = env.environment(run.device, run.dist, run.seed, run.cfg.train.amp)
    path = run.run_dir / "env.json"
    previous = files.read_json(path)
    if isinstance(previous, dict) and run.checkpoint_path.is_file():
        previous.setdefault("resumes", []).append(record)
        record = previous
    files.atomic_write_json(path, record)
