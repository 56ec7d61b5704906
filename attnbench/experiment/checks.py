"""Value checks of a built ExperimentConfig: choices, ranges, files, heads.

Each raises `ConfigError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modules

from .config import ConfigError, ExperimentConfig

CHOICES = {
    "data.dataset": ("synthetic", "voc", "cityscapes", "ade20k"),
    "eval.mode": ("whole", "slide"),
    "data.train_split": ("train", "trainaug"),
    "data.kind_cue": ("shape", "colour"),
    "data.val_split": ("val", "train", "trainval"),
    "model.backbone.depth": (18, 34, 50, 101),
    "model.backbone.output_stride": (8, 16, 32),
}


def validate(cfg: ExperimentConfig, where: str) -> None:
    """Raise ConfigError at the first value of cfg that does not describe a valid experiment."""
    _check_choices(cfg, where)
    _check_numbers(cfg, where)
    _check_ranges(cfg, where)
    _check_files(cfg, where)
    if not cfg.heads:
        raise ConfigError(f"{where}: heads: expected at least one head")
    if not cfg.seeds:
        raise ConfigError(f"{where}: seeds: expected at least one seed")
    if bool(cfg.eval.sweep_param) != bool(cfg.eval.sweep_values):
        raise ConfigError(f"{where}: eval.sweep_param and eval.sweep_values go together")
    seen: set[str] = set()
    for i, spec in enumerate(cfg.heads):
        _check_head(cfg, spec, f"heads.{i}", seen, where)


def _check_choices(cfg: ExperimentConfig, where: str) -> None:
    for key, choices in CHOICES.items():
        value: Any = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value not in choices:
            valid = ", ".join(map(str, choices))
            raise ConfigError(f"{where}: {key}: expected one of {valid}, got {value!r}")


def _check_numbers(cfg: ExperimentConfig, where: str) -> None:
    positive = {
        "train.iterations": cfg.train.iterations,
        "train.batch_size": cfg.train.batch_size,
        "train.checkpoint_interval": cfg.train.checkpoint_interval,
        "train.log_interval": cfg.train.log_interval,
        "train.lr": cfg.train.lr,
        "eval.batch_size": cfg.eval.batch_size,
        "data.crop_size": min(cfg.data.crop_size, default=0),
        "data.cat_max_ratio": cfg.data.cat_max_ratio,
        "data.base_size": min(cfg.data.base_size or (1,)),
        "eval.window": min(cfg.eval.window or (1,)),
        "eval.stride": min(cfg.eval.stride or (1,)),
        "data.image_size": cfg.data.image_size,
        "data.train_size": cfg.data.train_size,
        "data.val_size": cfg.data.val_size,
        "model.backbone.width": cfg.model.backbone.width,
        "model.head.channels": cfg.model.head.channels,
    }
    for key, value in positive.items():
        if value <= 0:
            raise ConfigError(f"{where}: {key}: expected a positive number, got {value!r}")
    non_negative = {
        "train.eval_interval": cfg.train.eval_interval,
        "train.threads": cfg.train.threads,
        "train.momentum": cfg.train.momentum,
        "train.weight_decay": cfg.train.weight_decay,
        "train.poly_power": cfg.train.poly_power,
        "data.num_workers": cfg.data.num_workers,
        "data.data_seed": cfg.data.data_seed,
        "model.head.aux_weight": cfg.model.head.aux_weight,
    }
    for key, value in non_negative.items():
        if value < 0:
            raise ConfigError(f"{where}: {key}: expected a number >= 0, got {value!r}")


def _check_ranges(cfg: ExperimentConfig, where: str) -> None:
    if not 0.0 <= cfg.model.head.dropout < 1.0:
        raise ConfigError(
            f"{where}: model.head.dropout: expected 0 <= p < 1, got {cfg.model.head.dropout!r}"
        )
    if not cfg.eval.scales or min(cfg.eval.scales) <= 0:
        raise ConfigError(
            f"{where}: eval.scales: expected a list of positive scales, got {list(cfg.eval.scales)}"
        )
    if not cfg.train.device.startswith(("auto", "cpu", "cuda")):
        raise ConfigError(f"{where}: train.device: expected auto, cpu or cuda[:N]")
    small, large = cfg.data.shape_size
    if not 0.02 <= small <= large <= 0.25:
        raise ConfigError(
            f"{where}: data.shape_size: expected 0.02 <= low <= high <= 0.25, got {small}, {large}"
        )
    low, high = cfg.data.scale_range
    if not 0 < low <= high:
        raise ConfigError(f"{where}: data.scale_range: expected 0 < low <= high, got {low}, {high}")
    if len(cfg.data.crop_size) not in (1, 2):
        raise ConfigError(f"{where}: data.crop_size: expected a size or [height, width]")


def _check_files(cfg: ExperimentConfig, where: str) -> None:
    if cfg.data.dataset != "synthetic":
        _check_root(cfg.data.dataset, cfg.data.root, where)
    if cfg.model.backbone.pretrained and not Path(cfg.model.backbone.pretrained).is_file():
        raise ConfigError(
            f"{where}: model.backbone.pretrained: no such checkpoint file "
            f"{cfg.model.backbone.pretrained!r}"
        )


def _check_head(cfg: ExperimentConfig, spec: Any, key: str, seen: set[str], where: str) -> None:
    if not spec.name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}: {key}.name: expected letters, digits, '-' or '_'")
    if spec.name in seen:
        raise ConfigError(f"{where}: {key}.name: head {spec.name!r} is named twice")
    seen.add(spec.name)
    if spec.module not in modules.REGISTRY:
        valid = ", ".join(modules.available())
        raise ConfigError(f"{where}: {key}.module: unknown module {spec.module!r}; valid: {valid}")
    valid_params = modules.hyper_parameters(spec.module)
    for param in spec.params:
        if param not in valid_params:
            raise ConfigError(
                f"{where}: {key}.params.{param}: module {spec.module!r} has no such "
                f"hyper-parameter; valid: {', '.join(valid_params) or '(none)'}"
            )
    try:
        modules.build(spec.module, cfg.model.head.channels, **spec.params)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: {key}.params: {err}") from None
    if spec.seeds is not None and not spec.seeds:
        raise ConfigError(f"{where}: {key}.seeds: expected at least one seed")


def _check_root(dataset: str, root: str | None, where: str) -> None:
    from ..data import TITLES, layout_hint

    if not root:
        raise ConfigError(
            f"{where}: data.root: the {dataset} dataset needs a root folder; "
            + layout_hint(dataset, "DIR")
        )
    if not Path(root).is_dir():
        raise ConfigError(
            f"{where}: data.root: no {TITLES[dataset]} data at {root!r}; "
            + layout_hint(dataset, root)
        )
