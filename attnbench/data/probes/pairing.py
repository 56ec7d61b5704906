"""The pairing probe: is there another shape of my kind somewhere in the image?

Relating items by content and counting them (one vs two). Drawn by the grid renderer
(grid.py): a shape is "paired" when another cell holds a shape of its kind; the empty
cell odds make "alone" a coin flip (grid.alone_balancing_empty).
"""

from __future__ import annotations

from .base import Probe, local_chance_iou
from .grid import CLASS_NAMES, LONG_RANGE_CLASSES, grid_builder

PROBE = Probe(
    name="pairing",
    capability="relating items by content and counting them: is another shape of my kind "
    "anywhere in the image (one vs two)?",
    class_names=CLASS_NAMES["pairing"],
    long_range_classes=LONG_RANGE_CLASSES,
    chance=local_chance_iou(),
    chance_derivation="each kind's paired and alone shapes have equal mass in expectation, "
    "and within gap_px a shape sees only its own cell, independent of the bit: the kind "
    "right and a coin flip for the bit scores 1/3 per class (base.local_chance_iou)",
    build=grid_builder("pairing"),
)
