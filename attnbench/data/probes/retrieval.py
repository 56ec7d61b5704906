"""The retrieval probe: what colour is the marker, somewhere else in the image?

Looking up a distant cue by content and broadcasting it. Drawn by the grid renderer
(grid.py): one cell holds a black or a white disk, and every shape takes its colour
as the long-range half of its class.
"""

from __future__ import annotations

from .base import Probe, local_chance_iou
from .grid import CLASS_NAMES, LONG_RANGE_CLASSES, grid_builder

PROBE = Probe(
    name="retrieval",
    capability="looking up one distant cue by content and broadcasting it to every item: "
    "what colour is the marker?",
    class_names=CLASS_NAMES["retrieval"],
    long_range_classes=LONG_RANGE_CLASSES,
    chance=local_chance_iou(),
    chance_derivation="the marker is black or white with equal odds, drawn apart from "
    "every shape by more than gap_px: the kind right and a coin flip for the colour "
    "scores 1/3 per class (base.local_chance_iou)",
    build=grid_builder("retrieval"),
)
