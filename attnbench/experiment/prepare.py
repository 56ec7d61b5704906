"""What `run` checks before it writes a file, and what it hands on: the Prepared record.

A Request (what the command line asks for) becomes the config, with its --set and
--output-dir; a probe suite becomes one part per probe. Every part is planned (which
run folders are done, unfinished or new, and none holds a run of another config), and
then its device, the batch split over processes, its data sets and its pretrained
weights are checked. Training and the report read the Prepared record alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from .. import env
from ..distributed import DistInfo
from ..errors import UserError
from .checks import check_files
from .config import ExperimentConfig, expand_probes, load_config
from .layout import experiment_dir
from .plan import Run, describe, plan_runs


@dataclasses.dataclass(frozen=True)
class Request:
    """What the command line asks `run` for."""

    config: str  # the experiment YAML
    overrides: tuple[str, ...] = ()  # --set key=value, in order
    heads: tuple[str, ...] | None = None  # --heads; None: every head
    output_dir: str | None = None  # --output-dir, in place of the config's
    jobs: int = 1  # --jobs: processes that train at once
    plan_indices: tuple[int, ...] | None = None  # a --jobs child's runs: plan positions
    dry_run: bool = False  # --dry-run: plan only; the data and checkpoint may be absent


@dataclasses.dataclass(frozen=True)
class Part:
    """One experiment of a request: the experiment itself, or one probe of a suite."""

    cfg: ExperimentConfig
    runs: list[Run]
    device: torch.device
    train_images: int | None  # None: not counted (--dry-run without the data's files)
    val_images: int | None
    num_classes: int

    @property
    def exp_dir(self) -> Path:
        return experiment_dir(self.cfg)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A request checked and planned: all that training and the report need."""

    request: Request
    cfg: ExperimentConfig  # as loaded: the suite's, or the experiment's
    parts: list[Part]
    info: DistInfo

    @property
    def runs(self) -> list[Run]:
        """Every part's runs, end to end (the positions --plan-indices counts)."""
        return [run for part in self.parts for run in part.runs]

    @property
    def suite_dir(self) -> Path | None:
        """results/<suite>/ of a probe suite, whose parts are results/<suite>/<probe>/."""
        return Path(self.cfg.output_dir) / self.cfg.name if self.cfg.probes else None


def prepare(request: Request, info: DistInfo) -> Prepared:
    """Check and plan the request, or raise a UserError naming what does not fit."""
    cfg = load_config(request.config, request.overrides)
    if request.output_dir:
        cfg = dataclasses.replace(cfg, output_dir=request.output_dir)
    check_jobs(request.jobs, info)
    if not request.dry_run:
        check_files(cfg, request.config)
    heads = list(request.heads) if request.heads is not None else None
    suite = expand_probes(cfg)
    # A probe suite: every probe's plan is checked before the first run.
    plans = [plan_runs(part, heads, request.config) for part in suite]
    if request.plan_indices is not None:  # a --jobs child: its runs only
        plans = select(plans, request.plan_indices)
    parts = [
        _check_part(part, planned, info, request.config, request.dry_run)
        for part, planned in zip(suite, plans, strict=True)
        if planned or request.plan_indices is None
    ]
    return Prepared(request, cfg, parts, info)


def describe_prepared(prepared: Prepared) -> str:
    """What --dry-run prints: every part's plan."""
    return "\n".join(
        describe(
            part.cfg,
            part.runs,
            device=str(part.device),
            world_size=prepared.info.world_size,
            num_classes=part.num_classes,
            train_images=part.train_images,
            val_images=part.val_images,
        )
        for part in prepared.parts
    )


def check_jobs(jobs: int, info: DistInfo) -> None:
    """A one-line UserError for a --jobs value that cannot work here."""
    if jobs < 1:
        raise UserError(f"--jobs {jobs}: expected a whole number of processes, 1 or more")
    if jobs > 1 and info.enabled:
        raise UserError(
            f"--jobs {jobs}: not under torchrun ({info.world_size} processes already train "
            "each run together); use one or the other"
        )


def parse_indices(text: str) -> tuple[int, ...]:
    """--plan-indices "0,4,8": positions in the plan."""
    try:
        indices = tuple(int(part) for part in text.split(","))
    except ValueError:
        indices = ()
    if not indices or min(indices) < 0:
        raise UserError(f"--plan-indices {text!r}: expected positions in the plan, e.g. 0,4,8")
    return indices


def select(plans: list[list[Run]], indices: Sequence[int]) -> list[list[Run]]:
    """Each part's plan reduced to the runs at `indices` in the plans laid end to end."""
    total = sum(map(len, plans))
    wanted = set(indices)
    if max(wanted) >= total:
        raise UserError(f"--plan-indices: {max(wanted)} is past the plan's {total} runs")
    kept, start = [], 0
    for planned in plans:
        kept.append([p for i, p in enumerate(planned, start) if i in wanted])
        start += len(planned)
    return kept


def _check_part(
    cfg: ExperimentConfig, runs: list[Run], info: DistInfo, where: str, dry_run: bool
) -> Part:
    """The part's device and both data sets, or a UserError naming the key that does not fit.
    A dry run on a data set whose files are absent counts no images and loads no weights."""
    from ..data import build_dataset, dataset_info, missing_data

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
    classes = dataset_info(cfg.data).num_classes
    if dry_run and missing_data(cfg.data):
        return Part(cfg, runs, device, None, None, classes)
    train_images = len(build_dataset(cfg.data, "train", train=True))
    val_images = len(build_dataset(cfg.data, "val", train=False))
    if cfg.model.backbone.pretrained and not dry_run:
        _check_pretrained(cfg, where)
    if train_images < cfg.train.batch_size:
        raise UserError(
            f"{where}: train.batch_size: {cfg.train.batch_size} is more than the "
            f"{train_images} training images"
        )
    return Part(cfg, runs, device, train_images, val_images, classes)


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
