"""The mIoU-against-cost figure: axis from zero, legend off the data, labels apart."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from matplotlib.text import Text

from attnbench.figures import plt
from attnbench.report.plots import draw_miou_against

# Five heads within 1% of each other in cost and 0.5 points in mIoU: the labels of
# such a cluster (nonlocal and ccnet in results/quick) used to be drawn on top of each other.
SUMMARY = pd.DataFrame(
    {
        "head": ["none", "nonlocal", "a2", "ccnet", "isa", "ema", "danet"],
        "baseline": [True, False, False, False, False, False, False],
        "macs": [9.49e6, 10.30e6, 9.80e6, 10.32e6, 12.0e6, 10.51e6, 15.4e6],
        "miou_mean": [31.3, 31.8, 34.4, 31.4, 31.1, 31.6, 33.1],
        "miou_ci": [3.9, 3.7, 12.8, 5.1, 12.0, 11.5, float("nan")],
    }
)


@pytest.fixture
def figure():
    fig = draw_miou_against(SUMMARY, "macs", "head GMACs", 1e9, caption="device: cpu")
    yield fig
    plt.close(fig)


def test_cost_axis_starts_at_zero(figure) -> None:
    ax = figure.axes[0]
    assert ax.get_xlim()[0] == 0.0
    assert ax.get_xlim()[1] >= SUMMARY["macs"].max() / 1e9


def test_legend_sits_outside_the_axes(figure) -> None:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    ax = figure.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1


def test_point_labels_neither_overlap_nor_cover_points(figure) -> None:
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    ax = figure.axes[0]
    labels = [t for t in ax.texts if t.get_text() in set(SUMMARY["head"])]
    assert sorted(t.get_text() for t in labels) == sorted(SUMMARY["head"])
    boxes = {t.get_text(): Text.get_window_extent(t, renderer) for t in labels}
    for (a, box_a), (b, box_b) in itertools.combinations(boxes.items(), 2):
        assert not box_a.overlaps(box_b), f"labels {a} and {b} overlap"
    for row in SUMMARY.itertuples():
        px, py = ax.transData.transform((row.macs / 1e9, row.miou_mean))
        for name, box in boxes.items():
            assert not box.contains(px, py), f"label {name} covers the point of {row.head}"


def test_no_values_no_figure() -> None:
    empty = SUMMARY.assign(macs=float("nan"))
    assert draw_miou_against(empty, "macs", "head GMACs", 1e9) is None


def test_curves_and_sweep_figures_carry_the_run_context(monkeypatch, tmp_path) -> None:
    from attnbench.report import plots

    drawn = []
    monkeypatch.setattr(plots, "save_figure", lambda fig, path: drawn.append(fig) or path)
    caption = "device: cpu; torch: 2.x; threads: 1\nseeds: 0, 1"
    curves = pd.DataFrame(
        {"head": ["a", "a"], "seed": [0, 0], "iteration": [1, 2], "metric": ["loss", "mIoU"],
         "value": [0.5, 40.0]}
    )  # fmt: skip
    plots.plot_curves(curves, tmp_path / "curves.png", caption=caption)
    table = pd.DataFrame([[40.0, 42.0]], index=["ema-t1"], columns=[1, 2])
    plots.plot_sweep_heatmap(table, "eval_stages", tmp_path / "sweep.png", caption)
    assert len(drawn) == 2
    for fig in drawn:
        assert caption in [t.get_text() for t in fig.texts]
        plt.close(fig)


def test_the_miou_axis_stays_within_0_and_100() -> None:
    wide = pd.DataFrame(
        {"head": ["a", "b"], "miou_mean": [59.0, 73.0], "miou_ci": [110.0, 37.0],
         "macs": [1e9, 2e9], "baseline": [False, False]}
    )  # fmt: skip
    fig = draw_miou_against(wide, "macs", "GMACs", scale=1e9)
    low, high = fig.axes[0].get_ylim()
    assert 0.0 <= low < 36.0 and 100.0 >= high > 73.0
    plt.close(fig)
