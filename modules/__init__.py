"""The module zoo: every context module maps (B, C, H, W) to the same shape.

import modules
block = modules.build("ema", 512, bases=64)
"""

from __future__ import annotations

import inspect

from torch import nn

from .criss_cross import CrissCrossAttention
from .double_attention import DoubleAttention
from .dual_attention import DualAttention
from .em_attention import EMAUnit
from .identity import Identity
from .interlaced import InterlacedSparseAttention
from .non_local import NonLocal

REGISTRY: dict[str, type[nn.Module]] = {
    "none": Identity,
    "nonlocal": NonLocal,
    "a2": DoubleAttention,
    "ccnet": CrissCrossAttention,
    "isa": InterlacedSparseAttention,
    "danet": DualAttention,
    "ema": EMAUnit,
}


def available() -> list[str]:
    """Registered module names, in registry order."""
    return list(REGISTRY)


def hyper_parameters(name: str) -> dict[str, object]:
    """Keyword-only hyper-parameters of a module and their defaults."""
    cls = _lookup(name)
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}


def build(name: str, channels: int, **kwargs: object) -> nn.Module:
    """Build module `name` for `channels` input channels; unknown names or keywords raise."""
    cls = _lookup(name)
    valid = hyper_parameters(name)
    unknown = sorted(set(kwargs) - set(valid))
    if unknown:
        raise ValueError(
            f"module {name!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )
    return cls(channels, **kwargs)


def _lookup(name: str) -> type[nn.Module]:
    if name not in REGISTRY:
        raise ValueError(f"unknown module {name!r}; valid: {', '.join(REGISTRY)}")
    return REGISTRY[name]


__all__ = [
    "REGISTRY",
    "CrissCrossAttention",
    "DoubleAttention",
    "DualAttention",
    "EMAUnit",
    "Identity",
    "InterlacedSparseAttention",
    "NonLocal",
    "available",
    "build",
    "hyper_parameters",
]
