"""The probes' per-seed statistics: solve rates with exact intervals, tests against `none`."""

from __future__ import annotations

import math

import pytest

from attnbench.report import solve


def test_the_threshold_is_a_quarter_of_the_way_from_chance_to_perfect() -> None:
    assert solve.solve_threshold(100 / 3) == pytest.approx(50.0)
    assert solve.solve_threshold(50.0) == pytest.approx(62.5)


@pytest.mark.parametrize(
    ("solved", "n", "low", "high"),
    [(8, 8, 0.631, 1.0), (0, 8, 0.0, 0.369), (5, 10, 0.187, 0.813)],
)
def test_solve_rates_carry_the_clopper_pearson_interval(solved, n, low, high) -> None:
    rate = solve.solve_rate([70.0] * solved + [30.0] * (n - solved), threshold=50.0)
    assert (rate.solved, rate.n) == (solved, n)
    assert (rate.low, rate.high) == (pytest.approx(low, abs=1e-3), pytest.approx(high, abs=1e-3))


def test_a_rate_is_above_another_only_when_the_intervals_are_disjoint() -> None:
    none = solve.solve_rate([30.0] * 8, 50.0)
    assert solve.solve_rate([70.0] * 7 + [30.0], 50.0).above(none)  # [0.47, 1] vs [0, 0.37]
    assert not solve.solve_rate([70.0] * 6 + [30.0] * 2, 50.0).above(none)  # [0.35, 0.97]
    assert not solve.solve_rate([], 50.0).above(none)


def test_comparison_against_the_baseline() -> None:
    head, base = [70.0, 72.0, 30.0, 80.0], [30.0, 31.0, 29.0, 28.0]
    result = solve.compare(head, base, threshold=50.0)
    # 3 of the head's seeds beat every baseline seed; its 30.0 beats 2 and ties 1 (half).
    assert result.p_improvement == pytest.approx((3 * 4 + 2 + 0.5) / 16)
    assert 0 < result.mann_whitney_p < 0.05
    # Fisher on [[3, 1], [0, 4]], one-sided: P(3 or more of the 3 solved land in the head).
    assert result.fisher_p == pytest.approx(math.comb(4, 3) * math.comb(4, 0) / math.comb(8, 3))
    assert math.isnan(solve.compare([], base, 50.0).fisher_p)


def test_iqm_drops_the_outer_quarters_and_bootstraps_an_interval() -> None:
    centre, low, high = solve.iqm_interval([0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 1000.0])
    assert centre == pytest.approx(35.0)  # the mean of 20, 30, 40 and 50
    assert low <= centre <= high
    assert solve.iqm_interval([40.0, 40.0, 40.0])[1:] == (pytest.approx(math.nan, nan_ok=True),) * 2


def test_iterations_to_solve_count_only_runs_that_end_solved() -> None:
    curve = [(300, 30.0), (600, 55.0), (900, 49.0), (1800, 70.0)]
    assert solve.iterations_to_solve(curve, 50.0) == 600
    assert math.isnan(solve.iterations_to_solve([(300, 60.0), (600, 40.0)], 50.0))
    assert math.isnan(solve.iterations_to_solve([], 50.0))
