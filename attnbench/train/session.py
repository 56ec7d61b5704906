"""Every run of a Prepared request that is not done, trained into its run folder: in
this process (with its torchrun peers), or dealt to --jobs child processes.

Per part (the experiment, or one probe of a suite): a header line with an estimate,
the experiment's config.yaml, then its runs in plan order under one progress bar.
A run whose loss becomes NaN is recorded as diverged and the next run starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

from .. import distributed, env, files, progress
from ..distributed import DistInfo
from ..experiment.config import dump_config
from ..experiment.layout import DONE, experiment_dir
from ..experiment.prepare import Part, Prepared
from . import console, jobs
from .run import run_one
from .seed_batches import run_seed_batch, seed_batches


@contextlib.contextmanager
def process_group(prepared: Prepared) -> Iterator[None]:
    """Under torchrun, the process group joined once for every part and left at the end.

    Once, not per part: ranks reach a later part at different times (rank 0 writes the
    report of the one before), and a group made again can send a late rank to the
    address of the old one. Every part trains on the same train.device."""
    if prepared.parts:
        distributed.init(prepared.info, prepared.parts[0].device)
    try:
        yield
    finally:
        distributed.shutdown()


def train_part(part: Part, info: DistInfo) -> None:
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
        # On a GPU the training images are read once, into the device's copy, while the
        # validation images are read at every evaluation: those go first into the cache.
        # On a CPU the training images are read at every step: they go first.
        first_val = part.device.type == "cuda"
        sets = (val_set, train_set) if first_val else (train_set, val_set)
        render_into_memory(*sets, show=show)
    for p in done if show else []:
        progress.say(f"{p.head.name} seed{p.seed}: done before, skipped")
    with env.numerics(part.device, cfg.train.threads):
        iterations = len(todo) * cfg.train.iterations
        with progress.experiment(len(part.runs), len(done), iterations, show=show):
            for group in seed_batches(todo, cfg.train.seed_batch, info):
                runs = [dataclasses.replace(p, device=part.device, dist=info) for p in group]
                if len(runs) == 1:
                    recorded = [run_one(runs[0], *data)]
                else:
                    recorded = run_seed_batch(runs, *data)
                for run, metrics in zip(runs, recorded, strict=True):
                    if show:
                        progress.say(console.result_line(run.label, metrics))
                    progress.run_finished()
                distributed.barrier()


def train_in_jobs(prepared: Prepared) -> list[jobs.Job]:
    """Every part announced, then the runs not done dealt to request.jobs child
    processes; the jobs that failed."""
    for part in prepared.parts:
        _announce(part, prepared.info)
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
