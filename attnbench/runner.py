"""`python -m attnbench run experiment.yaml`: train and evaluate every head x seed.

    python -m attnbench run experiments/quick.yaml --set train.iterations=200 --heads none,ema
    torchrun --nproc_per_node 4 -m attnbench run experiments/voc_heads.yaml

Everything is checked before anything is written: the config, --heads, the device,
the batch split over processes, the dataset files, and that no run folder holds a
run of another config. Then, per run, under results/<exp>/runs/<head>/seed<k>/:
config.yaml (the run's resolved config, loadable by itself), env.json, log.jsonl,
checkpoints/last.pt and, last, metrics.json, which marks the run as done. The
same command run again skips done runs and resumes unfinished ones from their
checkpoint. A run whose loss becomes NaN is recorded as diverged and the next run
starts. At the end runs.csv and curves.csv are rebuilt and the report written.

Distributed: each rank trains on its slice of every global batch, and evaluates
every world_size-th validation image; the confusion matrices are summed over the
ranks. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from . import checkpoint, costs, distributed, env, tables
from .config import ExperimentConfig, dump_config, load_config
from .distributed import DistInfo
from .errors import UserError
from .plan import describe, plan_runs, run_config
from .train import Diverged, RunSpec, evaluate, log_event, train, validation_loader


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML (see experiments/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value by its key path, e.g. train.lr=0.02 (repeatable)",
    )
    p.add_argument("--heads", metavar="A,B", help="run only these heads (comma-separated names)")
    p.add_argument("--output-dir", help="write under this folder instead of the config's")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit; write nothing")
    p.add_argument("--no-report", action="store_true", help="skip summary.md, report.md, figures")


def command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.output_dir:
        cfg = dataclasses.replace(cfg, output_dir=args.output_dir)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()] if args.heads else None
    return run_experiment(
        cfg, heads, config_path=args.config, dry_run=args.dry_run, report=not args.no_report
    )


def run_experiment(
    cfg: ExperimentConfig,
    heads: list[str] | None = None,
    config_path: str | Path = "config",
    *,
    dry_run: bool = False,
    report: bool = True,
) -> int:
    """Train and evaluate the planned runs, then write runs.csv, curves.csv and the report."""
    from .data import dataset_info

    where = str(config_path)
    info = distributed.from_environment()
    planned = plan_runs(cfg, heads, where)
    device, train_set, val_set = _check_machine_and_data(cfg, info, where)
    classes = dataset_info(cfg.data)
    if dry_run:
        if info.is_main:
            print(
                describe(
                    cfg,
                    planned,
                    device=str(device),
                    world_size=info.world_size,
                    num_classes=classes.num_classes,
                    train_images=len(train_set),
                    val_images=len(val_set),
                )
            )
        return 0

    exp_dir = Path(cfg.output_dir) / cfg.name
    if any(p.status != "done" for p in planned):
        _render_synthetic(train_set, val_set, show=info.is_main)
    distributed.init(info, device)
    try:
        with env.numerics(device, cfg.train.threads):
            if info.is_main:
                checkpoint.atomic_write_text(exp_dir / "config.yaml", dump_config(cfg))
            for p in planned:
                if p.status == "done":
                    _say(info, f"{p.head.name} seed{p.seed}: done before, skipped")
                    continue
                run = RunSpec(cfg, p.head, p.seed, p.run_dir, device, info)
                metrics = run_one(run, train_set, val_set, classes.class_names)
                _say(info, _one_line(run, metrics))
                distributed.barrier()
    finally:
        if info.is_main:
            runs_csv, _, count = tables.write_tables(cfg)
        distributed.shutdown()
    if info.is_main:
        print(f"wrote {runs_csv} ({count} runs) and curves.csv")
        if report:
            _build_report(exp_dir)
    return 0


def _render_synthetic(*datasets: Any, show: bool) -> None:
    from .data.synthetic import SyntheticShapes

    for dataset in datasets:
        if isinstance(dataset, SyntheticShapes):
            started = time.perf_counter()
            cached = dataset.render_all(show=show)
            if show:
                print(
                    f"{dataset.split} images: {cached} of {len(dataset)} drawn into memory "
                    f"in {time.perf_counter() - started:.0f} s",
                    flush=True,
                )


def _check_machine_and_data(
    cfg: ExperimentConfig, info: DistInfo, where: str
) -> tuple[torch.device, Any, Any]:
    """The device and both datasets, or a UserError naming the key that does not fit."""
    from .data import build_dataset

    try:
        device = env.resolve_device(cfg.train, info)
    except UserError as err:
        raise UserError(f"{where}: {err}") from None
    if cfg.train.batch_size % info.world_size:
        raise UserError(
            f"{where}: train.batch_size: {cfg.train.batch_size} does not split evenly over "
            f"{info.world_size} processes"
        )
    if cfg.data.dataset == "voc" and cfg.eval.batch_size > 1:
        raise UserError(
            f"{where}: eval.batch_size: expected 1 for voc, whose images differ in size "
            "(evaluation is on whole images)"
        )
    train_set = build_dataset(cfg.data, "train", train=True)
    val_set = build_dataset(cfg.data, "val", train=False)
    if cfg.model.backbone.pretrained:
        _check_pretrained(cfg, where)
    if len(train_set) < cfg.train.batch_size:
        raise UserError(
            f"{where}: train.batch_size: {cfg.train.batch_size} is more than the "
            f"{len(train_set)} training images"
        )
    return device, train_set, val_set


def _check_pretrained(cfg: ExperimentConfig, where: str) -> None:
    """Load the checkpoint into a throwaway backbone now, before any file is written."""
    from .backbone import ResNet, load_torchvision_checkpoint

    bb = cfg.model.backbone
    backbone = ResNet(
        bb.depth, output_stride=bb.output_stride, deep_stem=bb.deep_stem, width=bb.width
    )
    try:
        load_torchvision_checkpoint(backbone, bb.pretrained)
    except UserError as err:
        raise UserError(f"{where}: model.backbone.pretrained: {err}") from None


def run_one(
    run: RunSpec, train_set: Any, val_set: Any, class_names: tuple[str, ...]
) -> dict[str, Any]:
    """Train (or resume) one run, evaluate it, and write its metrics.json."""
    from .model import build_model

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
    figures = costs.static_costs(model, tuple(image.shape[-2:]))
    if run.device.type != "cuda":
        per_rank = cfg.train.batch_size // info.world_size
        batch = image.unsqueeze(0).expand(per_rank, -1, -1, -1).contiguous()
        figures.update(costs.cpu_training_memory(model, batch))

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
            checkpoint.atomic_write_json(run.run_dir / "metrics.json", metrics)
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
        figures.update(costs.cuda_training_memory(result.cuda_peak_bytes))
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
        checkpoint.atomic_write_json(run.run_dir / "metrics.json", metrics)
    return metrics


def _write_run_files(run: RunSpec) -> None:
    """config.yaml, and env.json (a resumed run keeps its first record and adds one)."""
    checkpoint.remove_stale_temporaries(run.run_dir)
    resolved = run_config(run.cfg, run.head, run.seed)
    header = f"# run {run.head.name} seed {run.seed} of experiment {run.cfg.name}\n"
    checkpoint.atomic_write_text(run.run_dir / "config.yaml", header + dump_config(resolved))
    record = env.environment(run.device, run.dist, run.seed, run.cfg.train.amp)
    path = run.run_dir / "env.json"
    previous = checkpoint.read_json(path)
    if isinstance(previous, dict) and run.checkpoint_path.is_file():
        previous.setdefault("resumes", []).append(record)
        record = previous
    checkpoint.atomic_write_json(path, record)


def _one_line(run: RunSpec, metrics: dict[str, Any]) -> str:
    if metrics["status"] == "diverged":
        return f"{run.label}: diverged ({metrics['error']})"
    return (
        f"{run.label}: mIoU {metrics['mIoU']:.2f}  pixel acc {metrics['pixel_acc']:.2f}  "
        f"mean acc {metrics['mean_acc']:.2f}  ({metrics['iterations']} it, "
        f"{metrics['train_time_s']:.1f} s, {metrics['train_images_per_s'] or 0:.1f} img/s)"
    )


def _say(info: DistInfo, text: str) -> None:
    if info.is_main:
        print(text, flush=True)


def _build_report(exp_dir: Path) -> None:
    try:
        from .report import build_report
    except ImportError as err:
        print(f"warning: no report ({err})", file=sys.stderr)
        return
    try:
        path = build_report(exp_dir)
    except Exception as err:  # the results are written; a failing figure must not hide them
        print(f"warning: report failed: {type(err).__name__}: {err}", file=sys.stderr)
        return
    print(f"wrote {path} and {path.with_name('summary.md')}")
