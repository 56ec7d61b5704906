"""Training throughput that says how steady it was.

A run is timed in windows (its log intervals): each window's images per second is one
sample. The first window of each process holds the warm-up (lazy initialisation,
cudnn.benchmark's search, the allocator growing), so callers leave it out. The run's
throughput is the median of the others, with their quartiles and range; a run whose
interquartile range exceeds CONTENDED_SPREAD of the median is flagged `contended`:
something else shared the machine for part of the run (a busy core stalls every
parallel region, a second job halves a GPU's rate), and its figure is not the
machine's rate. Wall time, evaluations and checkpoints included, is kept apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# IQR / median above which a run is called contended: well below the swings a shared
# machine causes, while the IQR ignores a few slow windows (a checkpoint write, a garbage
# collection). Where the value comes from: docs/findings.md.
CONTENDED_SPREAD = 0.25


@dataclass(frozen=True)
class Throughput:
    """Images per second over the steady-state windows of one run."""

    median: float
    q1: float
    q3: float
    low: float
    high: float
    windows: int  # steady-state windows the figures come from
    contended: bool

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.q3 - self.q1) / self.median if self.median > 0 else float("nan")

    def as_metrics(self) -> dict[str, Any]:
        """The metrics.json fields, prefixed train_images_per_s."""
        fields = asdict(self)
        out = {"train_images_per_s": fields.pop("median")}
        for key in ("q1", "q3", "low", "high"):
            out[f"train_images_per_s_{key}"] = fields[key]
        out["throughput_spread"] = self.spread
        out["throughput_windows"] = self.windows
        out["contended"] = self.contended
        return out


def steady_throughput(
    rates: Sequence[float], threshold: float = CONTENDED_SPREAD
) -> Throughput | None:
    """Summary of steady per-window rates (images/s); None without any window."""
    if not rates:
        return None
    steady = np.asarray(rates, dtype=float)
    q1, median, q3 = np.percentile(steady, [25, 50, 75])
    spread = (q3 - q1) / median if median > 0 else float("inf")
    return Throughput(
        median=float(median),
        q1=float(q1),
        q3=float(q3),
        low=float(steady.min()),
        high=float(steady.max()),
        windows=len(steady),
        contended=bool(spread > threshold),
    )


__all__ = ["CONTENDED_SPREAD", "Throughput", "steady_throughput"]
