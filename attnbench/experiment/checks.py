"""What no single field of an ExperimentConfig can say: ranges between values, files,
heads and seeds. (Choices and ranges of one field are declared on it, in config.py.)

Each raises `ConfigError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import modules

from ..errors import ConfigError

TORCHVISION_URL = "https://download.pytorch.org/models/"  # where torchvision's weights live
# cfg below is an ExperimentConfig: config.py imports this module to validate with it.
ExperimentConfig = Any


def validate(cfg: ExperimentConfig, where: str) -> None:
    """Raise ConfigError at the first value of cfg that does not describe a valid experiment."""
    _check_ranges(cfg, where)
    if not cfg.heads:
        raise ConfigError(f"{where}: heads: expected at least one head")
    if not cfg.seeds:
        raise ConfigError(f"{where}: seeds: expected at least one seed")
    if bool(cfg.eval.sweep_param) != bool(cfg.eval.sweep_values):
        raise ConfigError(f"{where}: eval.sweep_param and eval.sweep_values go together")
    seen: set[str] = set()
    for i, spec in enumerate(cfg.heads):
        _check_head(cfg, spec, f"heads.{i}", seen, where)
    _check_probes(cfg, where)


def _check_probes(cfg: ExperimentConfig, where: str) -> None:
    """probes, data.probe and data.probe_options against the registry of probes."""
    from ..data.probes import PROBES, REGISTRY, probe_options

    for probe in cfg.probes:
        if probe not in PROBES:
            raise ConfigError(
                f"{where}: probes: expected some of {', '.join(PROBES)}, got {probe!r}"
            )
    if cfg.data.probe not in PROBES:
        raise ConfigError(
            f"{where}: data.probe: expected one of {', '.join(PROBES)}, got {cfg.data.probe!r}"
        )
    if cfg.probes and cfg.data.dataset != "probe":
        raise ConfigError(f"{where}: probes: a probe suite needs data.dataset: probe")
    for name, options in cfg.data.probe_options.items():
        key = f"data.probe_options.{name}"
        if name not in PROBES:
            raise ConfigError(f"{where}: {key}: expected a probe, one of {', '.join(PROBES)}")
        if not isinstance(options, dict):
            raise ConfigError(f"{where}: {key}: expected a mapping of options, got {options!r}")
        try:
            probe_options(REGISTRY[name], options)
        except ValueError as err:
            option, problem = err.args
            key += f".{option}" if option else ""
            raise ConfigError(f"{where}: {key}: {problem}") from None


def _check_ranges(cfg: ExperimentConfig, where: str) -> None:
    small, large = cfg.data.shape_size
    if not 0.02 <= small <= large <= 0.25:
        raise ConfigError(
            f"{where}: data.shape_size: expected 0.02 <= low <= high <= 0.25, got {small}, {large}"
        )
    low, high = cfg.data.scale_range
    if not 0 < low <= high:
        raise ConfigError(f"{where}: data.scale_range: expected 0 < low <= high, got {low}, {high}")
    if cfg.train.seed_batch > 1 and cfg.train.loss_resolution != "input":
        raise ConfigError(
            f"{where}: train.loss_resolution: the seed-batched path (train.seed_batch) takes "
            f"the loss at the input's resolution only, got {cfg.train.loss_resolution!r}"
        )
    if len(cfg.data.crop_size) not in (1, 2):
        raise ConfigError(f"{where}: data.crop_size: expected a size or [height, width]")


def check_files(cfg: ExperimentConfig, where: str) -> None:
    """Raise one ConfigError listing everything on disk that cfg needs and lacks (the data
    set's files, the pretrained checkpoint), each with how to get it. `run` checks this
    before training; `run --dry-run` does not, so a plan can be read without the data."""
    from ..data import missing_data

    problems = [missing_data(cfg.data), _missing_checkpoint(cfg)]
    problems = [p for p in problems if p]
    if len(problems) == 1:
        raise ConfigError(f"{where}: {problems[0]}")
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise ConfigError(f"{where}: {len(problems)} things are missing: {listed}")


def _missing_checkpoint(cfg: ExperimentConfig) -> str | None:
    path = cfg.model.backbone.pretrained
    if not path or Path(path).is_file():
        return None
    name = Path(path).name
    get = (
        f"download {TORCHVISION_URL}{name} there"
        if re.fullmatch(r"resnet\d+-[0-9a-f]{8}\.pth", name)
        else f"put torchvision's ImageNet ResNet-{cfg.model.backbone.depth} weights there"
    )
    return f"model.backbone.pretrained: no such checkpoint file {path!r}; {get}"


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
