"""Which runs an experiment consists of, their state on disk, and the printed plan.

A run is one (head, seed), with its folder and its state as experiment/layout.py
reads them ("new", "resume" or "done"). A folder whose config.yaml differs from the
current config (other than in EXECUTION_KEYS) is refused rather than mixed with new
results.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import yaml

import modules

from ..distributed import DistInfo
from ..errors import UserError
from .config import ConfigError, ExperimentConfig, HeadSpec, dump_config, load_config
from .layout import DONE, NEW, RunFolder, experiment_dir, run_folder

# Keys that change how a run executes, not what it computes: a finished run stays
# valid when they change, and an unfinished one may resume under new values.
EXECUTION_KEYS = frozenset(
    {
        "output_dir",
        "data.num_workers",
        "train.device",
        "train.threads",
        "train.seed_batch",
        "train.log_interval",
        "train.checkpoint_interval",
        "eval.batch_size",
    }
)


@dataclasses.dataclass(frozen=True)
class Run:
    """One (head, seed) of an experiment: its config, its folder and state, where it runs."""

    cfg: ExperimentConfig
    head: HeadSpec
    seed: int
    folder: RunFolder
    status: str = NEW  # NEW, RESUME or DONE (see layout.RunFolder.status)
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))
    dist: DistInfo = dataclasses.field(default_factory=DistInfo)

    @property
    def label(self) -> str:
        return f"{self.head.name} seed{self.seed}"

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    @property
    def checkpoint_path(self) -> Path:
        return self.folder.checkpoint

    @property
    def log_path(self) -> Path:
        return self.folder.log

    @property
    def channels_last(self) -> bool:
        return self.device.type == "cuda"


def run_config(cfg: ExperimentConfig, spec: HeadSpec, seed: int) -> ExperimentConfig:
    """The experiment reduced to one head and one seed: a run's own config.yaml."""
    return dataclasses.replace(cfg, heads=(dataclasses.replace(spec, seeds=None),), seeds=(seed,))


def plan_runs(
    cfg: ExperimentConfig, heads: Sequence[str] | None, where: str = "config"
) -> list[Run]:
    """Every (head, seed) to run with its state; ConfigError for an unknown head or a clash."""
    names = [spec.name for spec in cfg.heads]
    for name in heads or ():
        if name not in names:
            raise ConfigError(
                f"{where}: --heads: no head named {name!r} under heads; valid: {', '.join(names)}"
            )
    _check_sweep(cfg, where)
    planned = []
    for spec in cfg.heads:
        if heads is not None and spec.name not in heads:
            continue
        for seed in cfg.seeds_of(spec):
            folder = run_folder(cfg, spec.name, seed)
            _check_same_config(folder, run_config(cfg, spec, seed))
            planned.append(Run(cfg, spec, seed, folder, folder.status()))
    return planned


def sweep_applies(cfg: ExperimentConfig, spec: HeadSpec) -> bool:
    """Whether this head's module has the attribute the evaluation sweep sets."""
    param = cfg.eval.sweep_param
    if not param:
        return False
    module = modules.build(spec.module, cfg.model.head.channels, **spec.params)
    return hasattr(module, param)


def _check_sweep(cfg: ExperimentConfig, where: str) -> None:
    param = cfg.eval.sweep_param
    if not param:
        return
    swept = [spec for spec in cfg.heads if sweep_applies(cfg, spec)]
    if not swept:
        raise ConfigError(f"{where}: eval.sweep_param: no head's module has an attribute {param!r}")
    for spec in swept:
        module = modules.build(spec.module, cfg.model.head.channels, **spec.params)
        for value in cfg.eval.sweep_values:
            try:
                setattr(module, param, int(value) if float(value).is_integer() else value)
            except (TypeError, ValueError) as err:
                raise ConfigError(f"{where}: eval.sweep_values: {value!r}: {err}") from None


def _check_same_config(folder: RunFolder, wanted: ExperimentConfig) -> None:
    try:
        saved = yaml.safe_load(folder.config.read_text())
    except (OSError, yaml.YAMLError):
        return  # no run there yet (or a config.yaml cut short: it is rewritten)
    if not isinstance(saved, dict):
        return
    # Through today's loader: a value in an older spelling (data.crop_size: 512 for [512])
    # or a key added since, at its default, is the same config. A config not loadable
    # today (a key removed since) is compared as written.
    with contextlib.suppress(UserError):
        saved = yaml.safe_load(dump_config(load_config(folder.config)))
    now = yaml.safe_load(dump_config(wanted))
    difference = _first_difference(_strip(saved), _strip(now))
    if difference is not None:
        key, old, new = difference
        raise ConfigError(
            f"{folder.path}: holds a run of another config ({key}: {old!r} there, {new!r} now); "
            "choose another name or output_dir, or delete that folder"
        )


def _strip(raw: Any, prefix: str = "") -> Any:
    if not isinstance(raw, dict):
        return raw
    kept = {k: v for k, v in raw.items() if f"{prefix}{k}" not in EXECUTION_KEYS}
    return {k: _strip(v, f"{prefix}{k}.") for k, v in kept.items()}


def _first_difference(old: Any, new: Any, key: str = "") -> tuple[str, Any, Any] | None:
    """(key path, old value, new value) of the first difference, or None when equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        for k in [*old, *(k for k in new if k not in old)]:
            found = _first_difference(old.get(k), new.get(k), f"{key}.{k}" if key else str(k))
            if found is not None:
                return found
        return None
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            found = _first_difference(a, b, f"{key}.{i}")
            if found is not None:
                return found
        return None
    return None if old == new else (key or "(top level)", old, new)


def describe(
    cfg: ExperimentConfig,
    planned: list[Run],
    *,
    device: str,
    world_size: int,
    num_classes: int,
    train_images: int | None,
    val_images: int | None,
) -> str:
    """The plan as the --dry-run prints it."""
    t, e, d = cfg.train, cfg.eval, cfg.data
    exp_dir = experiment_dir(cfg)
    todo = sum(p.status != DONE for p in planned)
    crop = f"{d.crop_size[0]}x{d.crop_size[-1]}"
    generated = d.dataset in ("synthetic", "probe")
    size = f"{d.image_size}x{d.image_size}" if generated else f"crops {crop}"
    scale_of = f"{d.base_size[0]}x{d.base_size[1]}" if d.base_size else "the image"
    if not generated:
        size += f", random scale {d.scale_range[0]}-{d.scale_range[1]} of {scale_of}"
    slide = cfg.sliding_window()
    how = (
        "whole image"
        if slide is None
        else "sliding window {}x{}, stride {}x{}".format(*slide[0], *slide[1])
    )
    if d.dataset != "synthetic" and d.base_size:
        how += ", images resized to fit {}x{} (scored at full size)".format(*d.base_size)
    sweep = f"; sweep {e.sweep_param} over {', '.join(map(str, e.sweep_values))}"
    images = (
        f"{train_images} train / {val_images} val images"
        if train_images is not None
        else f"images not counted (no {d.dataset} data at {d.root!r} yet)"
    )
    lines = [
        f"experiment {cfg.name}: {len(planned)} run(s), {todo} to train -> {exp_dir}",
        f"data: {d.dataset}, {num_classes} classes, {images}, training size {size}",
        f"model: ResNet-{cfg.model.backbone.depth} width {cfg.model.backbone.width} "
        f"OS{cfg.model.backbone.output_stride}, head channels {cfg.model.head.channels}"
        f"{', aux head' if cfg.model.head.aux else ''}",
        f"training: {t.iterations} iterations, batch {t.batch_size} "
        f"({t.batch_size // world_size} per process x {world_size}), lr {t.lr} poly "
        f"{t.poly_power}, momentum {t.momentum}, weight decay {t.weight_decay}",
        f"device: {device}, threads {t.threads or 'default'}, "
        f"amp {'bf16' if t.amp and device.startswith('cuda') else 'off'}"
        f"{', sync BN' if world_size > 1 and t.sync_bn and device.startswith('cuda') else ''}",
        f"evaluation: {how}, scales {', '.join(map(str, e.scales))}, "
        f"flip {'on' if e.flip else 'off'}, every {t.eval_interval or t.iterations} iterations"
        + (sweep if e.sweep_param else ""),
        f"checkpoints every {t.checkpoint_interval} iterations and at the end",
        "",
    ]
    modules_text = [_module_text(p.head) for p in planned]
    name_w = max([len("head"), *(len(p.head.name) for p in planned)])
    module_w = max([len("module"), *map(len, modules_text)])
    lines.append(f"{'head':<{name_w}}  {'module':<{module_w}}  {'seed':>4}  {'state':<7}  folder")
    for p, module in zip(planned, modules_text, strict=True):
        name = f"{p.head.name:<{name_w}}"
        lines.append(f"{name}  {module:<{module_w}}  {p.seed:>4}  {p.status:<7}  {p.run_dir}")
    return "\n".join(lines)


def _module_text(head: HeadSpec) -> str:
    params = ", ".join(f"{k}={v}" for k, v in head.params.items())
    return f"{head.module}({params})" if params else head.module
