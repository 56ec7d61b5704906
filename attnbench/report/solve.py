"""Statistics for bimodal outcomes: a probe run either learns the long-range rule or stays
at chance, so its seeds are counted, not averaged.

    solved          a seed solves a probe when its long-range mIoU reaches the threshold
                    chance + SOLVE_FRACTION x (100 - chance), fixed from the probe's
                    chance level before any run (50.0 where chance is 33.3)
    solve rate      k of n seeds, with its exact (Clopper-Pearson) 95% interval
    against `none`  one-sided Mann-Whitney U on the long-range mIoU, Fisher's exact test
                    on the solved counts, and the probability of improvement
                    P(X > Y) + P(X = Y) / 2 (U / (n m)), X a seed of the head, Y of `none`
    IQM             the interquartile mean of long-range mIoU, with a percentile
                    bootstrap 95% interval (secondary: it averages the two modes)
    to solve        the first evaluation at which a solved seed reached the threshold

Every test and interval comes from scipy.stats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

SOLVE_FRACTION = 0.25
LEVEL = 0.95
NAN = math.nan


def solve_threshold(chance: float) -> float:
    """The long-range mIoU (%) at which a seed counts as solved, for a probe whose
    context-free expectation is `chance` (%)."""
    return chance + SOLVE_FRACTION * (100.0 - chance)


@dataclass(frozen=True)
class SolveRate:
    solved: int
    n: int
    low: float  # exact 95% interval of the rate
    high: float

    @property
    def rate(self) -> float:
        return self.solved / self.n if self.n else NAN

    def above(self, other: SolveRate) -> bool:
        """Whether this rate's interval lies wholly above `other`'s (disjoint)."""
        return self.n > 0 and other.n > 0 and self.low > other.high


def solve_rate(scores: Sequence[float], threshold: float) -> SolveRate:
    """k of n seeds at or above the threshold, with the Clopper-Pearson interval."""
    values = [v for v in scores if v == v]
    if not values:
        return SolveRate(0, 0, NAN, NAN)
    k = sum(v >= threshold for v in values)
    ci = stats.binomtest(k, len(values)).proportion_ci(confidence_level=LEVEL, method="exact")
    return SolveRate(k, len(values), float(ci.low), float(ci.high))


@dataclass(frozen=True)
class Comparison:
    mann_whitney_p: float  # one-sided: the head's scores are larger than `none`'s
    fisher_p: float  # one-sided: the head solves more often than `none`
    p_improvement: float  # P(X > Y) + P(X = Y) / 2


def compare(scores: Sequence[float], base: Sequence[float], threshold: float) -> Comparison:
    """The head's seeds against the baseline's, without assuming normality."""
    x = [v for v in scores if v == v]
    y = [v for v in base if v == v]
    if not x or not y:
        return Comparison(NAN, NAN, NAN)
    test = stats.mannwhitneyu(x, y, alternative="greater")
    kx, ky = sum(v >= threshold for v in x), sum(v >= threshold for v in y)
    table = [[kx, len(x) - kx], [ky, len(y) - ky]]
    fisher = stats.fisher_exact(table, alternative="greater")
    return Comparison(
        float(test.pvalue), float(fisher.pvalue), float(test.statistic) / (len(x) * len(y))
    )


def _iqm(values: np.ndarray, axis: int = -1) -> np.ndarray:
    return stats.trim_mean(values, 0.25, axis=axis)


def iqm_interval(scores: Sequence[float]) -> tuple[float, float, float]:
    """(IQM, low, high): the interquartile mean and its percentile bootstrap 95% interval
    (seeded, so a report rebuilds the same); no interval below 3 seeds."""
    values = np.asarray([v for v in scores if v == v], dtype=float)
    if values.size == 0:
        return NAN, NAN, NAN
    centre = float(_iqm(values))
    if values.size < 3 or np.ptp(values) == 0:
        return centre, NAN, NAN
    boot = stats.bootstrap(
        (values,), _iqm, confidence_level=LEVEL, method="percentile", random_state=0
    )
    return centre, float(boot.confidence_interval.low), float(boot.confidence_interval.high)


def iterations_to_solve(curve: Sequence[tuple[int, float]], threshold: float) -> float:
    """The first evaluated iteration at which the score reached the threshold, for a run
    whose last evaluation is solved; NaN for a run that did not end solved."""
    points = sorted((int(i), float(v)) for i, v in curve if v == v)
    if not points or points[-1][1] < threshold:
        return NAN
    return float(next(i for i, v in points if v >= threshold))


def median(values: Sequence[float]) -> float:
    kept = [v for v in values if v == v]
    return float(np.median(kept)) if kept else NAN
