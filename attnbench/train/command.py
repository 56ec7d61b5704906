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

from .. import distributed, env, files, progress
from ..distributed import DistInfo
from ..errors import UserError
from ..experiment.config import ExperimentConfig, dump_config, expand_probes, load_config
from ..experiment.layout import DONE, experiment_dir
from ..experiment.overrides import add_override_option
from ..experiment.plan import Run, describe, plan_runs
from ..report import tables
from . import console, jobs
from .run import run_one


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML (see experiments/)")
    add_override_option(p, "e.g. train.lr=0.02 (repeatable)")
    p.add_argument("--heads", metavar="A,B", help="run only these heads (comma-separated names)")
    p.add_argument("--output-dir", help="write under this folder instead of the config's")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit; write nothing")
    p.add_argument("--no-report", action="store_true", help="skip summary.md, report.md, figures")
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train N runs at once, each in its own process with 1/N of the CPU cores",
    )
    # A --jobs child's runs: their positions in the plan (the parent sets it).
    p.add_argument("--plan-indices", help=argparse.SUPPRESS)


def command(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    if args.output_dir:
        cfg = dataclasses.replace(cfg, output_dir=args.output_dir)
    heads = [h.strip() for h in args.heads.split(",") if h.strip()] if args.heads else None
    jobs.check_jobs(args.jobs, distributed.from_environment())
    suite = expand_probes(cfg)
    # A probe suite: every probe's plan is checked before the first run.
    plans = [plan_runs(part, heads, str(args.config)) for part in suite]
    if args.plan_indices is not None:  # a --jobs child: its runs only
        plans = jobs.select(plans, jobs.parse_indices(args.plan_indices))
        kept = [(part, planned) for part, planned in zip(suite, plans, strict=True) if planned]
        suite, plans = [part for part, _ in kept], [planned for _, planned in kept]
    if args.jobs > 1 and not args.dry_run:
        return _run_in_jobs(args, cfg, suite, plans)
    for part, planned in zip(suite, plans, strict=True):
        run_experiment(
            part,
            heads,
            config_path=args.config,
            planned=planned,
            dry_run=args.dry_run,
            report=not args.no_report,
        )
    if args.dry_run and args.jobs > 1:
        print("\n" + jobs.describe_split([p for planned in plans for p in planned], args.jobs))
    if cfg.probes and not args.dry_run and not args.no_report:
        _build_capability_report(Path(cfg.output_dir) / cfg.name)
    return 0


def _run_in_jobs(
    args: argparse.Namespace,
    cfg: ExperimentConfig,
    suite: list[ExperimentConfig],
    plans: list[list[Run]],
) -> int:
    """Train the runs not done in --jobs child processes, then write the tables and reports
    as the sequential path does (only the tables when a job failed or on Ctrl-C)."""
    info = distributed.from_environment()
    for part in suite:  # every part checked before anything is written
        _check_machine_and_data(part, info, str(args.config))
    for part, planned in zip(suite, plans, strict=True):
        files.atomic_write_text(experiment_dir(part) / "config.yaml", dump_config(part))
        progress.say(console.header(part, planned))
    runs = [p for planned in plans for p in planned]
    failed = []
    try:
        if any(p.status != DONE for p in runs):
            failed = jobs.run_jobs(args, runs, args.jobs, experiment_dir(cfg) / "jobs")
    finally:
        written = [(part, *tables.write_tables(part)) for part in suite]
    for part, runs_csv, _, count in written:
        _close(part, runs_csv, count, report=not args.no_report and not failed)
    if failed:
        print(
            f"attnbench run: {len(failed)} job(s) failed (see above); the runs finished are "
            "kept, and the same command resumes the others",
            file=sys.stderr,
        )
        return 1
    if cfg.probes and not args.no_report:
        _build_capability_report(Path(cfg.output_dir) / cfg.name)
    return 0


def _build_capability_report(suite_dir: Path) -> None:
    from ..report.command import build_suite_report

    for path in build_suite_report(suite_dir):
        print(f"wrote {path}")


def run_experiment(
    cfg: ExperimentConfig,
    heads: list[str] | None = None,
    config_path: str | Path = "config",
    *,
    planned: list[Run] | None = None,
    dry_run: bool = False,
    report: bool = True,
) -> int:
    """Train and evaluate the planned runs (by default, those of `heads`), then write
    runs.csv, curves.csv and the report."""
    from ..data import dataset_info

    where = str(config_path)
    info = distributed.from_environment()
    planned = plan_runs(cfg, heads, where) if planned is None else planned
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

    exp_dir = experiment_dir(cfg)
    _say(info, console.header(cfg, planned))
    if any(p.status != DONE for p in planned):
        _render_synthetic(train_set, val_set, show=info.is_main)
    distributed.init(info, device)
    try:
        with env.numerics(device, cfg.train.threads):
            if info.is_main:
                files.atomic_write_text(exp_dir / "config.yaml", dump_config(cfg))
            _train_planned(cfg, planned, device, info, (train_set, val_set, classes.class_names))
    finally:
        if info.is_main:
            runs_csv, _, count = tables.write_tables(cfg)
        distributed.shutdown()
    if info.is_main:
        _close(cfg, runs_csv, count, report)
    return 0


def _close(cfg: ExperimentConfig, runs_csv: Path, count: int, report: bool) -> None:
    """After the runs: what was written, the report (when asked for) and the summary."""
    exp_dir = experiment_dir(cfg)
    print(f"wrote {runs_csv} ({count} runs) and curves.csv")
    shown = _build_report(exp_dir) if report else None
    print(console.closing(exp_dir, shown), flush=True)


def _train_planned(
    cfg: ExperimentConfig,
    planned: list[Run],
    device: torch.device,
    info: DistInfo,
    data: tuple[Any, Any, tuple[str, ...]],
) -> None:
    """Every run not done before, in plan order, under the experiment's progress bar."""
    done = [p for p in planned if p.status == DONE]
    for p in done:
        _say(info, f"{p.head.name} seed{p.seed}: done before, skipped")
    todo = [p for p in planned if p.status != DONE]
    iterations = len(todo) * cfg.train.iterations
    with progress.experiment(len(planned), len(done), iterations, show=info.is_main):
        for p in todo:
            run = dataclasses.replace(p, device=device, dist=info)
            metrics = run_one(run, *data)
            _say(info, console.result_line(run.label, metrics))
            progress.run_finished()
            distributed.barrier()


def _render_synthetic(*datasets: Any, show: bool) -> None:
    for dataset in datasets:
        if hasattr(dataset, "render_all"):  # the generated data sets: embedded task, probes
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
    from ..data import build_dataset

    try:
        device = env.resolve_device(cfg.train.device, info.local_rank)
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
    from ..model.backbone import ResNet, load_torchvision_checkpoint

    bb = cfg.model.backbone
    backbone = ResNet(
        bb.depth, output_stride=bb.output_stride, deep_stem=bb.deep_stem, width=bb.width
    )
    try:
        load_torchvision_checkpoint(backbone, bb.pretrained)
    except UserError as err:
        raise UserError(f"{where}: model.backbone.pretrained: {err}") from None


def _say(info: DistInfo, text: str) -> None:
    if info.is_main:
        progress.say(text)


def _build_report(exp_dir: Path) -> list[Path] | None:
    """summary.md, report.md and the figures: the files written, or None (and a warning)
    when that failed."""
    from ..report.command import build_report, report_files

    try:
        build_report(exp_dir)
    except Exception as err:  # the results are written; a failing figure must not hide them
        print(f"warning: report failed: {type(err).__name__}: {err}", file=sys.stderr)
        return None
    return report_files(exp_dir)
