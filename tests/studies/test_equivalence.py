"""The EMA / A^2 equivalence: exact in the responsibility form, a measured gap otherwise."""

from __future__ import annotations

import argparse
import csv
import itertools
import pathlib

import pytest

from attnbench.studies.equivalence import (
    DEFAULT_TEMPERATURES,
    command,
    configure_parser,
    measure_equivalence,
    tidy_rows,
)


@pytest.fixture(scope="module")
def result() -> dict:
    return measure_equivalence()


def test_responsibility_form_is_exact(result: dict) -> None:
    assert result["exact"]["float64"]["max_abs_diff"] < 1e-12
    assert result["exact"]["float64"]["rel_diff"] < 1e-12
    assert result["exact"]["float32"]["rel_diff"] < 1e-5


def test_softmax_gap_shrinks_with_temperature(result: dict) -> None:
    gap = result["softmax_gap"]
    assert list(gap) == list(DEFAULT_TEMPERATURES)
    values = [gap[t] for t in sorted(gap, reverse=True)]  # temperature 1 -> 0.01
    assert all(a > b for a, b in itertools.pairwise(values))
    assert 0.05 < gap[1.0] < 2.0  # the paper's form really differs
    assert gap[0.01] < 0.1 * gap[1.0]


def test_other_sizes_and_seeds_stay_exact() -> None:
    r = measure_equivalence(
        channels=6, bases=3, height=1, width=5, batch=1, temperatures=(1.0,), seed=7
    )
    assert r["exact"]["float64"]["max_abs_diff"] < 1e-12
    assert r["softmax_gap"][1.0] > 0.01


def _fixture_runs(path: pathlib.Path) -> None:
    rows = [
        ("quick", "a2", "a2", 0, "", "mIoU", "", 40.0),
        ("quick", "a2", "a2", 1, "", "mIoU", "", 44.0),
        ("quick", "ema", "ema", 0, "", "mIoU", "", 50.0),
        ("quick", "ema", "ema", 1, "", "mIoU", "", 52.0),
        ("quick", "ema-t1", "ema", 0, "", "mIoU", "", 47.5),
        ("quick", "ema", "ema", 0, "eval_stages=1", "mIoU", "", 49.0),
        ("quick", "ema", "ema", 0, "", "iou", "background", 90.0),
        ("quick", "nonlocal", "nonlocal", 0, "", "mIoU", "", 61.0),
        # a probe experiment also records long-range mIoU and engagement
        ("ema_stages", "ema-t1", "ema", 0, "", "mIoU", "", 70.0),
        ("ema_stages", "ema-t1", "ema", 0, "", "long_range_mIoU", "", 60.0),
        ("ema_stages", "ema-t1", "ema", 0, "", "engagement", "", 0.25),
        ("ema_stages", "ema-t1", "ema", 1, "", "mIoU", "", 72.0),
        ("ema_stages", "ema-t1", "ema", 1, "", "long_range_mIoU", "", 64.0),
        ("ema_stages", "ema-t1", "ema", 1, "", "engagement", "", 0.35),
        ("ema_stages", "ema-t1", "ema", 0, "knockout", "long_range_mIoU", "", 20.0),
    ]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["experiment", "head", "module", "seed", "setting", "metric", "class_name", "value"]
        )
        w.writerows(rows)


def test_report_matches_measurement(tmp_path: pathlib.Path, result: dict) -> None:
    runs = tmp_path / "runs.csv"
    _fixture_runs(runs)
    out = tmp_path / "out"
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    args = parser.parse_args(["--out", str(out), "--runs", str(runs), str(tmp_path / "none.csv")])
    assert command(args) == 0
    md = (out / "equivalence.md").read_text()
    assert (out / "equivalence.png").stat().st_size > 1000

    with open(out / "equivalence.csv", newline="") as f:
        written = list(csv.DictReader(f))
    expected = tidy_rows(result)
    assert len(written) == len(expected)
    for got, want in zip(written, expected, strict=True):
        assert (got["quantity"], got["dtype"]) == (want["quantity"], want["dtype"])
        assert float(got["temperature"]) == want["temperature"]
        assert float(got["value"]) == pytest.approx(want["value"], rel=1e-9, abs=1e-18)

    for fig in result["exact"].values():
        assert f"{fig['max_abs_diff']:.3e}" in md and f"{fig['rel_diff']:.3e}" in md
    for t, gap in result["softmax_gap"].items():
        assert f"| {t:g} | {gap:.3e} |" in md
    assert "torch " in md and "device cpu" in md and "seed 0" in md

    assert "| quick | a2 | a2 | 42.00 ± 2.83 | – | – | 2 |" in md
    assert "| quick | ema | ema | 51.00 ± 1.41 | – | – | 2 |" in md  # eval_stages=1 left out
    assert "| quick | ema | ema-t1 | 47.50 ± n/a | – | – | 1 |" in md
    # the knock-out setting is left out too
    assert "| ema_stages | ema | ema-t1 | 71.00 ± 1.41 | 62.00 ± 2.83 | 0.300 ± 0.071 | 2 |" in md
    assert "nonlocal" not in md and "eval_stages" not in md
    assert f"No runs found at `{tmp_path / 'none.csv'}`." in md


def test_report_without_runs(tmp_path: pathlib.Path) -> None:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    assert parser.parse_args([]).runs == ["results/ema_stages/runs.csv"]
    missing = tmp_path / "missing.csv"
    args = parser.parse_args(["--out", str(tmp_path), "--runs", str(missing)])
    assert command(args) == 0
    assert "No runs found" in (tmp_path / "equivalence.md").read_text()
