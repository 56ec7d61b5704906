"""Experiment configuration: YAML into typed, frozen dataclasses.

Every YAML key is a dataclass field; an unknown key, a wrong type or a bad value
raises `ConfigError` naming the file, the key path and what was expected. What is
valid is declared on the fields: a `Literal` type lists the choices, and a field's
metadata holds its range (POSITIVE, NON_NEGATIVE, ...), checked as the YAML is read;
checks.py holds what no single field can say.
Overrides use the same key paths: `--set train.lr=0.02 --set heads.0.params.stages=1`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ..data import DATASETS
from ..errors import ConfigError
from .checks import validate
from .overrides import apply_override, yaml_problem


@dataclass(frozen=True)
class Check:
    """A field's range: `test` holds for each of its values (for the whole value when
    `whole`), else the error says it expected `expected`."""

    test: Callable[[Any], bool]
    expected: str
    whole: bool = False


POSITIVE = {"check": Check(lambda v: v > 0, "a positive number")}
NON_NEGATIVE = {"check": Check(lambda v: v >= 0, "a number >= 0")}
FRACTION = {"check": Check(lambda v: 0.0 <= v < 1.0, "0 <= p < 1")}
SCALES = {"check": Check(lambda v: bool(v) and min(v) > 0, "a list of positive scales", True)}
GRID = {"check": Check(lambda v: v >= 2, "a number >= 2")}
MARGIN = {"check": Check(lambda v: 0.0 <= v < 0.5, "0 <= margin < 0.5")}
DEVICE = {"check": Check(lambda v: v.startswith(("auto", "cpu", "cuda")), "auto, cpu or cuda[:N]")}


def _in(default: Any, metadata: dict) -> Any:
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class DataConfig:
    dataset: Literal[DATASETS] = "synthetic"
    probe: str = "pairing"  # probe only: a name in the registry (data/probes/__init__.py)
    # probe only: each probe's own knobs, by probe name (e.g. connectivity: {paddles: 8})
    probe_options: dict[str, Any] = field(default_factory=dict)
    grid: int = _in(2, GRID)  # probe only: cells per side
    margin: float = _in(0.25, MARGIN)  # probe only: empty border of a cell, a fraction of it
    root: str | None = None  # the folder `python -m attnbench data <dataset> --root` prepares
    train_split: Literal["train", "trainaug"] = "train"  # trainaug: VOC only
    val_split: Literal["val", "train", "trainval"] = "val"
    crop_size: tuple[int, ...] = _in((512,), POSITIVE)  # one value (a square) or (height, width)
    scale_range: tuple[float, float] = (0.5, 2.0)
    # (long, short) edges that the random scale multiplies (mmseg's `scale`), and that
    # evaluation images are resized to fit; None: the scale is of the image's own size.
    base_size: tuple[int, int] | None = _in(None, POSITIVE)
    # below 1: redraw crops one class dominates (mmseg's 0.75)
    cat_max_ratio: float = _in(1.0, POSITIVE)
    num_workers: int = _in(0, NON_NEGATIVE)
    image_size: int = _in(64, POSITIVE)  # synthetic only
    train_size: int = _in(2048, POSITIVE)  # synthetic only
    val_size: int = _in(128, POSITIVE)  # synthetic only
    kind_cue: Literal["shape", "colour"] = "shape"  # synthetic only (see data/synthetic.py)
    shape_size: tuple[float, float] = (0.10, 0.16)  # synthetic only: radius / image size
    data_seed: int = _in(0, NON_NEGATIVE)


@dataclass(frozen=True)
class BackboneConfig:
    depth: Literal[18, 34, 50, 101] = 50
    output_stride: Literal[8, 16, 32] = 8
    deep_stem: bool = False
    width: int = _in(64, POSITIVE)
    # How many of the four residual stages to keep; fewer limit the receptive field
    # (0: the stem alone). The probes use this so that a plain head cannot see the cue.
    stages: Literal[0, 1, 2, 3, 4] = 4
    pretrained: str | None = None  # local torchvision-format checkpoint


@dataclass(frozen=True)
class HeadConfig:
    channels: int = _in(512, POSITIVE)
    concat_input: bool = True
    dropout: float = _in(0.1, FRACTION)
    aux: bool = True
    aux_weight: float = _in(0.4, NON_NEGATIVE)


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = _in(20000, POSITIVE)
    batch_size: int = _in(16, POSITIVE)  # global, split over ranks
    lr: float = _in(0.01, POSITIVE)
    momentum: float = _in(0.9, NON_NEGATIVE)
    weight_decay: float = _in(5e-4, NON_NEGATIVE)
    poly_power: float = _in(0.9, NON_NEGATIVE)
    eval_interval: int = _in(0, NON_NEGATIVE)  # 0: evaluate at the end only
    checkpoint_interval: int = _in(1000, POSITIVE)
    log_interval: int = _in(20, POSITIVE)
    amp: bool = True  # bf16 autocast, CUDA only
    device: str = _in("auto", DEVICE)  # "auto" | "cpu" | "cuda" | "cuda:N"
    threads: int = _in(0, NON_NEGATIVE)  # 0: from the machine (env.machine_threads)
    # Where the training loss is taken: "input", the logits upsampled to the image (the
    # papers' and mmseg's recipe); "head", the logits at the head's resolution against the
    # labels sampled there (nearest-exact), the probes' recipe (docs/probe-protocol.md).
    # Evaluation is at the input's resolution either way.
    loss_resolution: Literal["input", "head"] = "input"
    sync_bn: bool = True  # distributed runs only
    # Train up to this many seeds of a head as one batched model (train/batched.py); 0, 1: off.
    seed_batch: int = _in(0, NON_NEGATIVE)


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = _in(1, POSITIVE)
    flip: bool = False
    scales: tuple[float, ...] = _in((1.0,), SCALES)
    # slide: windows of `window` every `stride`, their logits averaged
    mode: Literal["whole", "slide"] = "whole"
    window: tuple[int, int] | None = _in(None, POSITIVE)  # (height, width); None: data.crop_size
    stride: tuple[int, int] | None = _in(None, POSITIVE)  # None: half the window
    # After training, set this attribute of the context module to each value and evaluate again.
    sweep_param: str | None = None
    sweep_values: tuple[float, ...] = ()
    # Evaluate once more with the context module knocked out (replaced by the identity).
    knockout: bool = False


@dataclass(frozen=True)
class HeadSpec:
    name: str
    module: str
    params: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: the experiment's seeds
    # "paper": the module's own initialisation (a zero-initialised gate where it has one);
    # "open": the gate starts open (the module's open_gate()), the fairness ablation.
    gate: Literal["paper", "open"] = "paper"


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    heads: tuple[HeadSpec, ...]
    seeds: tuple[int, ...] = (0,)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs"  # git-ignored; the record: --set output_dir=results
    # A probe suite: the experiment runs once per probe, as <name>/<probe> with data.probe
    # set to it, and the report adds the capability table over them (data.dataset: probe).
    probes: tuple[str, ...] = ()

    def head(self, name: str) -> HeadSpec:
        for spec in self.heads:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def seeds_of(self, spec: HeadSpec) -> tuple[int, ...]:
        return spec.seeds if spec.seeds is not None else self.seeds

    def sliding_window(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(window, stride) in slide mode (defaults: the crop, half of it); None: whole images."""
        if self.eval.mode != "slide":
            return None
        crop = self.data.crop_size
        h, w = self.eval.window or (crop[0], crop[-1])
        return (h, w), self.eval.stride or (max(1, h // 2), max(1, w // 2))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read, override, type-check and validate an experiment YAML."""
    path = Path(path)
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"{where}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{where}: not valid YAML{yaml_problem(err)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level")
    for item in overrides:
        apply_override(raw, item, where)
    cfg = _build(ExperimentConfig, raw, "", where)
    validate(cfg, where)
    return cfg


def expand_probes(cfg: ExperimentConfig) -> list[ExperimentConfig]:
    """The experiments of a probe suite, one per probe (named <name>/<probe>); else [cfg].
    Each keeps only its own probe's options, so that a run's saved config, and with it
    the check that a folder holds the same runs, does not change with another probe's knobs."""
    if not cfg.probes:
        return [cfg]
    options = cfg.data.probe_options
    return [
        dataclasses.replace(
            cfg,
            name=f"{cfg.name}/{probe}",
            probes=(),
            data=dataclasses.replace(
                cfg.data,
                probe=probe,
                probe_options={probe: options[probe]} if probe in options else {},
            ),
        )
        for probe in cfg.probes
    ]


def config_to_dict(cfg: Any) -> Any:
    """A plain, YAML-safe dict of a config (tuples become lists)."""
    if dataclasses.is_dataclass(cfg):
        return {f.name: config_to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [config_to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: config_to_dict(v) for k, v in cfg.items()}
    return cfg


def dump_config(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _build(tp: Any, value: Any, key: str, where: str) -> Any:
    """Convert a YAML value to type `tp`, or raise naming the key path."""
    label = f"{where}: {key or '(top level)'}"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key, where)
    if origin is Literal:
        choices = typing.get_args(tp)
        if not any(value == c and type(value) is type(c) for c in choices):
            valid = ", ".join(map(str, choices))
            raise ConfigError(f"{label}: expected one of {valid}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _build(inner[0], value, key, where)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            value = [value] if args[-1] is Ellipsis else value
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{label}: expected a list, got {value!r}")
        if args[-1] is Ellipsis:
            return tuple(_build(args[0], v, f"{key}.{i}", where) for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{label}: expected a list of {len(args)} values, got {value!r}")
        return tuple(
            _build(a, v, f"{key}.{i}", where)
            for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{label}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and type(value) is tp:
        return value
    if tp is Any:
        return value
    raise ConfigError(f"{label}: expected {_type_name(tp)}, got {value!r}")


def _build_dataclass(tp: Any, value: Any, key: str, where: str) -> Any:
    """A config dataclass from a YAML mapping: every key known, typed and in range."""
    label = f"{where}: {key or '(top level)'}"
    if not isinstance(value, dict):
        raise ConfigError(f"{label}: expected a mapping, got {value!r}")
    hints = typing.get_type_hints(tp)
    fields = {f.name: f for f in dataclasses.fields(tp)}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: {_join(key, unknown[0])}: unknown key; valid keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _build(hints[name], value[name], _join(key, name), where)
            _check(f, kwargs[name], _join(key, name), where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: {_join(key, name)}: required key is missing")
    return tp(**kwargs)


def _check(f: dataclasses.Field, value: Any, key: str, where: str) -> None:
    """The range that field `f` declares in its metadata, if any."""
    check = f.metadata.get("check")
    if check is None or value is None:
        return
    if check.whole:
        if not check.test(value):
            raise ConfigError(f"{where}: {key}: expected {check.expected}, got {list(value)}")
        return
    for item in value if isinstance(value, tuple) else (value,):
        if not check.test(item):
            raise ConfigError(f"{where}: {key}: expected {check.expected}, got {item!r}")


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
