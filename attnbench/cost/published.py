"""mmsegmentation's published training memory and inference speed, per head and backbone.

Facts read from the README tables of open-mmlab/mmsegmentation (configs/<method>/README.md,
columns "Mem (GB)" and "Inf time (fps)"), at the Pascal VOC 2012 + Aug 512x512 setting
(20k iterations, 4 GPUs x 4 images) where one exists. EMANet has no VOC row: its only
rows are Cityscapes 512x1024 (4 GPUs x 2 images), and they are compared with FCN's
row of that same setting. A2Net has no row at all. mmseg trained in float32 on other
GPUs at other batch sizes, so only ratios to the FCN row of the same setting compare
with ours; the absolute figures do not.
"""

from __future__ import annotations

from dataclasses import dataclass

MMSEG = "open-mmlab/mmsegmentation"
VOC = "Pascal VOC 2012 + Aug, 512x512, 4 GPUs x 4 images"
CITYSCAPES = "Cityscapes, 512x1024, 4 GPUs x 2 images"


@dataclass(frozen=True)
class Published:
    """One README row: memory per GPU in GB, inference frames per second."""

    method: str
    mem_gb: float
    fps: float
    setting: str
    source: str  # repository path @ commit the figures were read from

    @property
    def cite(self) -> str:
        return f"{MMSEG} {self.source}"


def _source(path: str, commit: str) -> str:
    return f"{path} @ {commit[:8]}"


_FCN = _source("configs/fcn/README.md", "02e04cc213fa7fe5313258e27fcca6c8d4ef8e23")
_NONLOCAL = _source("configs/nonlocal_net/README.md", "0b127a561528062ea1086ccb80808da46be3639f")
_CCNET = _source("configs/ccnet/README.md", "0264de0bb000e09a4dc348fc1759d0834a4af940")
_ISA = _source("configs/isanet/README.md", "0b127a561528062ea1086ccb80808da46be3639f")
_DANET = _source("configs/danet/README.md", "0b127a561528062ea1086ccb80808da46be3639f")
_EMA = _source("configs/emanet/README.md", "02e04cc213fa7fe5313258e27fcca6c8d4ef8e23")

# (our module name, backbone depth) -> the row. "none" is the FCN baseline.
PUBLISHED: dict[tuple[str, int], Published] = {
    ("none", 50): Published("FCN", 5.7, 23.28, VOC, _FCN),
    ("none", 101): Published("FCN", 9.2, 14.81, VOC, _FCN),
    ("nonlocal", 50): Published("NonLocal", 6.4, 21.21, VOC, _NONLOCAL),
    ("nonlocal", 101): Published("NonLocal", 9.8, 14.01, VOC, _NONLOCAL),
    ("ccnet", 50): Published("CCNet", 6.0, 20.45, VOC, _CCNET),
    ("ccnet", 101): Published("CCNet", 9.5, 13.64, VOC, _CCNET),
    ("isa", 50): Published("ISANet", 5.9, 23.08, VOC, _ISA),
    ("isa", 101): Published("ISANet", 9.465, 7.42, VOC, _ISA),
    ("danet", 50): Published("DANet", 6.5, 20.94, VOC, _DANET),
    ("danet", 101): Published("DANet", 9.9, 13.76, VOC, _DANET),
    ("ema", 50): Published("EMANet", 5.4, 4.58, CITYSCAPES, _EMA),
    ("ema", 101): Published("EMANet", 6.2, 2.87, CITYSCAPES, _EMA),
}

# FCN at each setting, the denominator of a published ratio (FCN 40k rows: memory and
# speed do not depend on the schedule, and the 80k rows leave them blank).
BASELINES: dict[tuple[str, int], Published] = {
    (VOC, 50): PUBLISHED[("none", 50)],
    (VOC, 101): PUBLISHED[("none", 101)],
    (CITYSCAPES, 50): Published("FCN", 5.7, 4.17, CITYSCAPES, _FCN),
    (CITYSCAPES, 101): Published("FCN", 9.2, 2.66, CITYSCAPES, _FCN),
}


def published_ratios(module: str, depth: int) -> tuple[Published, float, float] | None:
    """(row, memory / FCN's, fps / FCN's) at the row's own setting, or None without a row."""
    row = PUBLISHED.get((module, depth))
    if row is None:
        return None
    base = BASELINES[(row.setting, depth)]
    return row, row.mem_gb / base.mem_gb, row.fps / base.fps


__all__ = ["BASELINES", "CITYSCAPES", "PUBLISHED", "VOC", "Published", "published_ratios"]
