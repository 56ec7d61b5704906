"""How many shapes of each kind an image of the synthetic task holds.

A count vector gives, per kind, 0, 1 or 2 shapes; its law is a product of per-kind
odds renormalised over the vectors whose total is allowed. The default odds make a
shape as likely to be alone of its kind (count 1) as paired (count 2).
"""

from __future__ import annotations

import math

import numpy as np


def count_table(lo: int, hi: int, kinds: int = 3) -> np.ndarray:
    """Every per-kind count vector in {0, 1, 2}^kinds whose total is in [lo, hi]: (V, kinds)."""
    table = np.array(np.meshgrid(*[np.arange(3)] * kinds, indexing="ij"))
    table = table.reshape(kinds, -1).T  # (3**kinds, kinds)
    return table[(table.sum(1) >= lo) & (table.sum(1) <= hi)]


def count_probabilities(table: np.ndarray, weights: tuple[float, float, float]) -> np.ndarray:
    # Product of per-kind odds, renormalised over the allowed vectors: the same law as
    # drawing each kind's count and rejecting out-of-range totals, in a single draw.
    p = np.asarray(weights, dtype=np.float64)[table].prod(1)
    return p / p.sum()


def alone_fraction(table: np.ndarray, p: np.ndarray) -> float:
    """Expected share of shapes that are alone (count 1) among all shapes."""
    alone = (p * (table == 1).sum(1)).sum()
    return float(alone / (p * table.sum(1)).sum())


def balanced_weights(table: np.ndarray) -> tuple[float, float, float]:
    """Odds (1, w, 1) with w chosen so the alone share is as close to 1/2 as possible."""
    lo, hi = math.log(1e-3), math.log(1e3)
    for _ in range(60):  # the share grows with w: bisect on log w
        mid = (lo + hi) / 2
        w = (1.0, math.exp(mid), 1.0)
        if alone_fraction(table, count_probabilities(table, w)) < 0.5:
            lo = mid
        else:
            hi = mid
    return (1.0, math.exp((lo + hi) / 2), 1.0)
