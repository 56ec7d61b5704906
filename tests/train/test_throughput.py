"""Honest throughput: median over steady windows, its spread, and the contended flag."""

from __future__ import annotations

import pytest

from attnbench.train.throughput import CONTENDED_SPREAD, steady_throughput


def test_a_steady_series_is_not_contended() -> None:
    rates = [100.0, 102.0, 98.0, 101.0, 99.0, 100.0]
    t = steady_throughput(rates)
    assert t is not None and t.median == pytest.approx(100.0) and t.windows == 6
    assert t.low == 98.0 and t.high == 102.0 and t.spread < 0.05 and not t.contended


def test_a_series_that_swings_under_load_is_contended() -> None:
    # A second job takes the cores for half the run: the rate drops from ~300 to ~40 img/s.
    rates = [300.0, 298.0, 305.0, 40.0, 36.0, 41.0, 302.0, 38.0]
    t = steady_throughput(rates)
    assert t is not None and t.contended and t.spread > CONTENDED_SPREAD
    assert t.low == 36.0 and t.high == 305.0


def test_one_slow_window_does_not_flag_a_run() -> None:
    # A single hiccup (a garbage collection, a checkpoint write) stays outside the IQR.
    t = steady_throughput([100.0] * 9 + [20.0])
    assert t is not None and not t.contended and t.median == 100.0


def test_metrics_fields_and_empty_series() -> None:
    t = steady_throughput([10.0, 30.0])
    assert t is not None
    fields = t.as_metrics()
    assert fields["train_images_per_s"] == 20.0 and fields["throughput_windows"] == 2
    assert {"train_images_per_s_q1", "train_images_per_s_q3", "contended"} <= set(fields)
    assert steady_throughput([]) is None
