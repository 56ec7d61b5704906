"""What a context probe declares, for the registry (probes/__init__.py), the config and
the report: its classes, which of them only context can tell apart, the score of a
network that sees no context there, how its images are drawn, and what it isolates.

A probe is a segmentation task on which a network whose receptive field is narrower
than the probe's `gap_px` is at chance, by construction, on the long-range classes.
Its knobs beyond the shared data keys live in a frozen dataclass (`options`), set
from the config's `data.probe_options.<name>` mapping.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..rendered import RenderedImages

# build(data config, split, size, transform) -> the probe's data set
Builder = Callable[[Any, str, int, Any], RenderedImages]


@dataclass(frozen=True)
class Probe:
    name: str
    capability: str  # the one capability it isolates, in one sentence
    class_names: tuple[str, ...]
    long_range_classes: tuple[int, ...]  # the classes only context can tell apart
    chance: float  # expected long-range mIoU (a fraction) of a network without context
    chance_derivation: str  # why, in a sentence or two
    build: Builder
    options: type | None = None  # a frozen dataclass of its own knobs, all defaulted


def local_chance_iou(steps: int = 10_000) -> float:
    """The best expected IoU, averaged over two long-range classes of equal mass, of a
    predictor that cannot see which of the two a pixel belongs to.

    P and A pixels with P = A: a predictor that cannot see the bit can only call a
    pixel the first class with some probability p. Then IoU_1 = pP / (P + pA) =
    p / (1 + p) and IoU_2 = (1 - p) / (2 - p); their mean peaks at p = 1/2, at 1/3.
    Always answering one class scores 1/4.
    """
    p = np.linspace(0.0, 1.0, steps + 1)
    return float(np.max((p / (1 + p) + (1 - p) / (2 - p)) / 2))


def probe_options(probe: Probe, raw: dict | None) -> Any:
    """`probe`'s options from a plain mapping (data.probe_options.<name>). ValueError with
    args (option name or None, what was wrong): the first unknown key, wrongly typed
    value, or combination the options' own `problem()` rejects."""
    raw = dict(raw or {})
    if probe.options is None:
        if raw:
            raise ValueError(None, f"{probe.name} takes no options, got {', '.join(raw)}")
        return None
    fields = {f.name: f for f in dataclasses.fields(probe.options)}
    for key, value in raw.items():
        if key not in fields:
            raise ValueError(key, f"unknown option; valid options: {', '.join(fields)}")
        want = type(fields[key].default)
        if want is float and type(value) is int:
            raw[key] = float(value)
        elif type(value) is not want:
            raise ValueError(key, f"expected {want.__name__}, got {value!r}")
    options = probe.options(**raw)
    check = getattr(options, "problem", None)
    problem = check() if check else None
    if problem:
        raise ValueError(None, problem)
    return options
