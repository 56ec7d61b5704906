"""Experiment configuration: YAML into typed, frozen dataclasses.

Every YAML key is a dataclass field; an unknown key, a wrong type or a bad value
raises `ConfigError` naming the file, the key path and what was expected.
Overrides use the same key paths: `--set train.lr=0.02 --set heads.0.params.stages=1`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import UserError


class ConfigError(UserError):
    """A config file or override that does not describe a valid experiment."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"  # "synthetic" | "voc" | "cityscapes" | "ade20k"
    root: str | None = None  # the folder `python -m attnbench data <dataset> --root` prepares
    train_split: str = "train"  # VOC: "train" | "trainaug"
    val_split: str = "val"
    crop_size: tuple[int, ...] = (512,)  # one value (a square) or (height, width)
    scale_range: tuple[float, float] = (0.5, 2.0)
    # (long, short) edges that the random scale multiplies (mmseg's `scale`), and that
    # evaluation images are resized to fit; None: the scale is of the image's own size.
    base_size: tuple[int, int] | None = None
    cat_max_ratio: float = 1.0  # below 1: redraw crops one class dominates (mmseg's 0.75)
    num_workers: int = 0
    image_size: int = 64  # synthetic only
    train_size: int = 2048  # synthetic only
    val_size: int = 128  # synthetic only
    kind_cue: str = "shape"  # synthetic only: "shape" | "colour" (see data/synthetic.py)
    shape_size: tuple[float, float] = (0.10, 0.16)  # synthetic only: radius / image size
    data_seed: int = 0


@dataclass(frozen=True)
class BackboneConfig:
    depth: int = 50
    output_stride: int = 8
    deep_stem: bool = False
    width: int = 64
    pretrained: str | None = None  # local torchvision-format checkpoint


@dataclass(frozen=True)
class HeadConfig:
    channels: int = 512
    concat_input: bool = True
    dropout: float = 0.1
    aux: bool = True
    aux_weight: float = 0.4


@dataclass(frozen=True)
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 20000
    batch_size: int = 16  # global, split over ranks
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    eval_interval: int = 0  # 0: evaluate at the end only
    checkpoint_interval: int = 1000
    log_interval: int = 20
    amp: bool = True  # bf16 autocast, CUDA only
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    threads: int = 0  # 0: torch's default
    sync_bn: bool = True  # distributed runs only


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 1
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    mode: str = "whole"  # "whole" | "slide": windows of `window` every `stride`, logits averaged
    window: tuple[int, int] | None = None  # (height, width); None: data.crop_size
    stride: tuple[int, int] | None = None  # None: half the window
    # After training, set this attribute of the context module to each value and evaluate again.
    sweep_param: str | None = None
    sweep_values: tuple[float, ...] = ()


@dataclass(frozen=True)
class HeadSpec:
    name: str
    module: str
    params: dict[str, Any] = field(default_factory=dict)
    seeds: tuple[int, ...] | None = None  # None: the experiment's seeds


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    heads: tuple[HeadSpec, ...]
    seeds: tuple[int, ...] = (0,)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "results"

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
        raise ConfigError(f"{where}: not valid YAML{_yaml_problem(err)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of keys at the top level")
    for item in overrides:
        _apply_override(raw, item, where)
    cfg = _build(ExperimentConfig, raw, "", where)
    from .checks import validate  # the checks need ConfigError and the dataclasses above

    validate(cfg, where)
    return cfg


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


def _apply_override(raw: dict, item: str, where: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        # The value alone is parsed: its "line 1" would say nothing, the column would.
        raise ConfigError(
            f"{where}: --set {item!r}: the value {text!r} is not valid YAML"
            + _yaml_problem(err, line=False)
        ) from None
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(part, node, prefix)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {prefix} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(last, node, key)] = value
    else:
        node[last] = value


def _yaml_problem(err: yaml.YAMLError, *, line: bool = True) -> str:
    """' at line L, column C: what the parser found (and where that construct began)',
    for a one-line error."""

    def at(mark: Any) -> str:
        column = f"column {mark.column + 1}"
        return f"line {mark.line + 1}, {column}" if line else column

    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    text = f"{f' at {at(mark)}' if mark else ''}: {problem}"
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start is not None:
        text += f" ({context} that starts at {at(start)})"
    return text


def _list_index(part: str, node: list, prefix: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {prefix}: expected an index below {len(node)}")
    return int(part)


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _build(tp: Any, value: Any, key: str, where: str) -> Any:
    """Convert a YAML value to type `tp`, or raise naming the key path."""
    label = f"{where}: {key or '(top level)'}"
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
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
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: {_join(key, name)}: required key is missing")
        return tp(**kwargs)
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


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
