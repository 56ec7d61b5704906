"""The module zoo: every context module maps (B, C, H, W) to the same shape.

import modules
block = modules.build("ema", 512, bases=64)

The package is imported as `modules`. Every module keeps the ContextModule contract below.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from .adaptive_pyramid_context import AdaptivePyramidContext
from .asymmetric_non_local import AsymmetricNonLocal
from .compact_non_local import CompactNonLocal
from .criss_cross import CrissCrossAttention
from .disentangled_non_local import DisentangledNonLocal
from .double_attention import DoubleAttention
from .dual_attention import DualAttention
from .dynamic_filters import DynamicFilters
from .em_attention import EMAUnit
from .global_context import GlobalContext
from .global_pool import GlobalPool
from .global_reasoning import GlobalReasoning
from .hamburger import Hamburger
from .identity import Identity
from .interlaced import InterlacedSparseAttention
from .latent_graph import LatentGNN
from .non_local import NonLocal
from .object_context import ObjectContext
from .point_wise_attention import PointwiseSpatialAttention


@runtime_checkable
class ContextModule(Protocol):
    """What a context module is to the rest of the suite (an nn.Module besides).

    FROZEN: names of parameters that are never trained (requires_grad False); the
    optimiser skips them and the parameter counts include them.
    MAIN_MAP: the key of attention_maps() that the report draws for a query pixel, or
    None; MAIN_MAP_ARGMAX: when set, that map holds weights per base or group
    (B, K, H, W) and is drawn as their argmax under this title.
    EXTRA_MAP, EXTRA_MAP_COUNT: a map whose first channels get a figure of their own
    (EMA's bases), or None and 0.
    EVAL_OVERRIDES: (attribute, hyper-parameter) pairs: an attribute an evaluation
    sweep may set, and the hyper-parameter it replaces at evaluation (EMA: eval_stages
    for stages); the report labels a swept head with that hyper-parameter's value.
    """

    FROZEN: tuple[str, ...]
    MAIN_MAP: str | None
    MAIN_MAP_ARGMAX: str | None
    EXTRA_MAP: str | None
    EXTRA_MAP_COUNT: int
    EVAL_OVERRIDES: tuple[tuple[str, str], ...]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        ...

    def open_gate(self) -> None:
        """Open the zero-initialised gate the paper starts the block with (the fairness
        ablation: `gate: open` in an experiment); a no-op for a module without one."""
        ...

    def gates(self) -> tuple[nn.Parameter, ...]:
        """The parameters that the paper starts at zero so that the block starts without
        its context (those open_gate sets); () for a module without such a gate."""
        ...

    def macs(self, height: int, width: int) -> int:
        """Multiply-accumulates of one forward on a (1, C, height, width) input, by formula."""
        ...

    def attention_maps(
        self, x: torch.Tensor, query: tuple[int, int] | None = None
    ) -> dict[str, torch.Tensor]:
        """Named maps of the module's weights on x, (B, M, H, W) or other; for `query`
        (row, column) where the map is of one pixel's weights."""
        ...


REGISTRY: dict[str, type[nn.Module]] = {
    "none": Identity,
    "nonlocal": NonLocal,
    "a2": DoubleAttention,
    "ccnet": CrissCrossAttention,
    "isa": InterlacedSparseAttention,
    "danet": DualAttention,
    "ema": EMAUnit,
    # A control, not attention: global-pooling context with no gate (the probes need one).
    "pool": GlobalPool,
    # The rest of mmsegmentation's context heads and the survey's modules (issue 24),
    # alphabetical.
    "ann": AsymmetricNonLocal,
    "apc": AdaptivePyramidContext,
    "dm": DynamicFilters,
    "dnl": DisentangledNonLocal,
    "gc": GlobalContext,
    "ocr": ObjectContext,
    "cgnl": CompactNonLocal,
    "glore": GlobalReasoning,
    "ham": Hamburger,
    "latentgnn": LatentGNN,
    "psa": PointwiseSpatialAttention,
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
    "AdaptivePyramidContext",
    "AsymmetricNonLocal",
    "CompactNonLocal",
    "ContextModule",
    "CrissCrossAttention",
    "DisentangledNonLocal",
    "DoubleAttention",
    "DualAttention",
    "DynamicFilters",
    "EMAUnit",
    "GlobalContext",
    "GlobalPool",
    "GlobalReasoning",
    "Hamburger",
    "Identity",
    "InterlacedSparseAttention",
    "LatentGNN",
    "NonLocal",
    "ObjectContext",
    "PointwiseSpatialAttention",
    "available",
    "build",
    "hyper_parameters",
]
