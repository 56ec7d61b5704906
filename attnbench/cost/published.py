"""mmsegmentation's published training memory and inference speed, per head and backbone.

A view on attnbench/data/published.csv (the suite's one file of published figures, each
row citing its README at a commit): the Pascal VOC 2012 + Aug 512x512 rows (20k
iterations, 4 GPUs x 4 images) where one exists. EMANet has no VOC row: its only rows are
Cityscapes 512x1024 (4 GPUs x 2 images), and they are compared with FCN's row of that
same setting. A2Net has no row at all. mmseg trained in float32 on other GPUs at other
batch sizes, so only ratios to the FCN row of the same setting compare with ours; the
absolute figures do not.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.published import load_published

VOC = "Pascal VOC 2012 + Aug, 512x512, 4 GPUs x 4 images"
CITYSCAPES = "Cityscapes, 512x1024, 4 GPUs x 2 images"


@dataclass(frozen=True)
class Published:
    """One README row: memory per GPU in GB, inference frames per second."""

    method: str
    mem_gb: float
    fps: float
    setting: str
    source: str  # repository @ commit and path the figures were read from

    @property
    def cite(self) -> str:
        return self.source


def _depth(backbone: str) -> int:
    return int(backbone.split("-")[1])  # "R-50-D8" -> 50


def _row(record: Any, setting: str) -> Published:
    return Published(record.method, record.mem_gb, record.fps, setting, record.source)


def _tables() -> tuple[dict[tuple[str, int], Published], dict[tuple[str, int], Published]]:
    table = load_published().dropna(subset=["mem_gb", "fps"])
    voc = table[(table["dataset"] == "voc") & (table["iterations"] == 20000)]
    city = table[(table["dataset"] == "cityscapes") & (table["crop"] == "512x1024")]
    published = {(r.head, _depth(r.backbone)): _row(r, VOC) for r in voc.itertuples()}
    for r in city[city["head"] == "ema"].itertuples():
        published[("ema", _depth(r.backbone))] = _row(r, CITYSCAPES)
    baselines = {(VOC, d): row for (head, d), row in published.items() if head == "none"}
    # FCN's 40k rows: memory and speed do not depend on the schedule, and the 80k rows
    # leave them blank (those were dropped above).
    for r in city[city["head"] == "none"].itertuples():
        baselines[(CITYSCAPES, _depth(r.backbone))] = _row(r, CITYSCAPES)
    return published, baselines


# (our module name, backbone depth) -> the row. "none" is the FCN baseline.
PUBLISHED, BASELINES = _tables()


def published_ratios(module: str, depth: int) -> tuple[Published, float, float] | None:
    """(row, memory / FCN's, fps / FCN's) at the row's own setting, or None without a row."""
    row = PUBLISHED.get((module, depth))
    if row is None:
        return None
    base = BASELINES[(row.setting, depth)]
    return row, row.mem_gb / base.mem_gb, row.fps / base.fps


__all__ = ["BASELINES", "CITYSCAPES", "PUBLISHED", "VOC", "Published", "published_ratios"]
