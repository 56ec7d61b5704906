"""Every run of a Prepared request that is not done, trained into its run folder: in
this process (with its torchrun peers), or dealt to --jobs child processes.

Per part (the experiment, or one probe of a suite): a header line with an estimate,
the experiment's config.yaml, then its runs in plan order under one progress bar.
A run whose loss becomes NaN is recorded as diverged and the next run starts.
"""

from __future__ import annotations

import dataclasses

from .. import distributed, env, files, progress
from ..distributed import DistInfo
from ..experiment.config import dump_config
from ..experiment.layout import DONE, experiment_dir
from ..experiment.prepare import Part, Prepared
from . import console, jobs
from .run import run_one


def train(prepared: Prepared) -> list[jobs.Job]:
    """Train what is not done; the --jobs children that failed (none in this process)."""
    info = prepared.info
    if prepared.request.jobs == 1:
        for part in prepared.parts:
            _train_part(part, info)
        return []
    for part in prepared.parts:
        _announce(part, info)
    runs = prepared.runs
    if all(p.status == DONE for p in runs):
        return []
    return jobs.run_jobs(prepared.request, runs, experiment_dir(prepared.cfg) / "jobs")


def _announce(part: Part, info: DistInfo) -> None:
    """The part's header line, and its resolved config.yaml (the report's context)."""
    if info.is_main:
        line = console.header(part.cfg, part.runs)
        progress.say(line)
        text = dump_config(part.cfg)
        files.atomic_write_text(part.exp_dir / "config.yaml", text)


def _train_part(part: Part, info: DistInfo) -> None:
    """The part's runs not done, in plan order, under the experiment's progress bar."""
    from ..data import build_dataset, dataset_info
    from ..data.rendered import render_into_memory

    _announce(part, info)
    cfg, show = part.cfg, info.is_main
    train_set = build_dataset(cfg.data, "train", train=True)
    val_set = build_dataset(cfg.data, "val", train=False)
    data = (train_set, val_set, dataset_info(cfg.data).class_names)
    done = [p for p in part.runs if p.status == DONE]
    todo = [p for p in part.runs if p.status != DONE]
    if todo:
        render_into_memory(train_set, val_set, show=show)
    for p in done if show else []:
        progress.say(f"{p.head.name} seed{p.seed}: done before, skipped")
    with env.numerics(part.device, cfg.train.threads):
        distributed.init(info, part.device)
        try:
            iterations = len(todo) * cfg.train.iterations
            with progress.experiment(len(part.runs), len(done), iterations, show=show):
                for p in todo:
                    run = dataclasses.replace(p, device=part.device, dist=info)
                    metrics = run_one(run, *data)
                    if show:
                        progress.say(console.result_line(run.label, metrics))
                    progress.run_finished()
                    distributed.barrier()
        finally:
            distributed.shutdown()
