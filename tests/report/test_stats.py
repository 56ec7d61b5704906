import math

import pandas as pd
import pytest

from attnbench.report.stats import (
    Interval,
    baseline_head,
    mean_interval,
    paired_difference,
    rank_with_ties,
    split_diverged,
    summarise,
    sweep_tables,
)


def test_mean_interval_by_hand():
    iv = mean_interval([60.0, 62.0, 61.0])
    assert (iv.mean, iv.std, iv.n) == (61.0, pytest.approx(1.0), 3)
    assert iv.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    single = mean_interval([5.0])
    assert single.mean == 5.0 and math.isnan(single.std) and math.isnan(single.half_width)
    assert mean_interval([]).n == 0


def test_paired_difference_pairs_by_seed():
    head = {0: 70.0, 1: 73.0, 2: 72.5, 5: 99.0}  # seed 5 has no baseline partner
    base = {0: 60.0, 1: 62.0, 2: 61.0, 7: 0.0}
    iv = paired_difference(head, base)
    diffs = [10.0, 11.0, 11.5]
    sd = math.sqrt(sum((d - sum(diffs) / 3) ** 2 for d in diffs) / 2)
    assert iv.n == 3
    assert iv.mean == pytest.approx(sum(diffs) / 3)
    assert iv.half_width == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-6)


def test_rank_with_ties():
    ivs = [
        Interval(61.0, 1.0, 2.5, 3),  # [58.5, 63.5]
        Interval(71.8, 1.6, 4.0, 3),  # [67.8, 75.8]
        Interval(72.3, 1.5, 3.8, 3),  # [68.5, 76.1]
        Interval(50.0, math.nan, math.nan, 1),  # a point, below the others
        Interval(math.nan, math.nan, math.nan, 0),
    ]
    assert rank_with_ties(ivs) == [(3, []), (2, [2]), (1, [1]), (4, []), (0, [])]


def _runs(rows):
    columns = ["experiment", "head", "module", "seed", "setting", "metric", "class_name", "value"]
    return pd.DataFrame([["e", *r] for r in rows], columns=columns)


def test_baseline_choice():
    runs = _runs([("plain", "none", 0, "", "mIoU", "", 1.0), ("x", "ema", 0, "", "mIoU", "", 2)])
    assert baseline_head(runs) == "plain"
    two = _runs(
        [
            ("plain", "none", 0, "", "mIoU", "", 1.0),
            ("none", "none", 0, "", "mIoU", "", 1.0),
        ]
    )
    assert baseline_head(two) == "none"
    assert baseline_head(_runs([("x", "ema", 0, "", "mIoU", "", 2.0)])) is None


def test_split_diverged_and_sweep_order():
    runs = _runs(
        [
            ("a", "ema", 0, "", "mIoU", "", 50.0),
            ("a", "ema", 1, "", "mIoU", "", 9.0),
            ("a", "ema", 1, "", "diverged", "", 300.0),
            ("a", "ema", 0, "eval_stages=10", "mIoU", "", 3.0),
            ("a", "ema", 0, "eval_stages=2", "mIoU", "", 2.0),
            ("a", "ema", 1, "eval_stages=2", "mIoU", "", 99.0),
        ]
    )
    kept, diverged = split_diverged(runs)
    assert set(kept["seed"]) == {0}
    assert diverged.to_dict("records") == [
        {"head": "a", "module": "ema", "seed": 1, "iteration": 300.0}
    ]
    tables = sweep_tables(runs)
    assert list(tables) == ["eval_stages"]
    assert list(tables["eval_stages"].columns) == ["2", "10"]
    assert tables["eval_stages"].loc["a"].tolist() == [2.0, 3.0]


def test_summarise_single_seed_and_all_diverged():
    runs = _runs(
        [
            ("none", "none", 0, "", "mIoU", "", 50.0),
            ("bad", "ema", 0, "", "diverged", "", 17.0),
            ("bad", "ema", 0, "", "macs", "", 3e9),  # costs of a diverged run still count
            ("solo", "nonlocal", 0, "", "mIoU", "", 55.0),
        ]
    )
    table = summarise(runs).set_index("head")
    assert table.loc["bad", "n"] == 0 and table.loc["bad", "rank"] == 0
    assert math.isnan(table.loc["bad", "miou_mean"]) and table.loc["bad", "macs"] == 3e9
    assert table.loc["solo", "rank"] == 1 and math.isnan(table.loc["solo", "miou_ci"])
    assert table.loc["solo", "delta_mean"] == 5.0 and table.loc["solo", "delta_n"] == 1
    assert table.loc["none", "rank"] == 2 and table.loc["none", "tied_with"] == ()
