"""What no single field of an ExperimentConfig can say: ranges between values, files,
heads and seeds. (Choices and ranges of one field are declared on it, in config.py.)

Each raises `ConfigError` naming the file, the key path and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import modules

from ..errors import ConfigError

# cfg below is an ExperimentConfig: config.py imports this module to validate with it.
ExperimentConfig = Any


def validate(cfg: ExperimentConfig, where: str) -> None:
    """Raise ConfigError at the first value of cfg that does not describe a valid experiment."""
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
    if len(cfg.data.crop_size) not in (1, 2):
        raise ConfigError(f"{where}: data.crop_size: expected a size or [height, width]")


def _check_files(cfg: ExperimentConfig, where: str) -> None:
    if cfg.data.dataset not in ("synthetic", "probe"):  # the generated ones need no files
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
