"""Figures of an experiment, drawn from the summary and curve tables (PNG, headless)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text

from ..figures import plt, save_figure

LABEL_GAP_PX = 2.0  # clearance left between two point labels after repelling
MARKER_RADIUS_PT = 4.0  # half the size of an errorbar marker (matplotlib's default 6 pt)


def repel_labels(ax: Axes, labels: list[Annotation], rounds: int = 200) -> None:
    """Move point labels apart vertically until no label box touches another or a point.

    Each round pushes every overlapping pair of labels apart by half their overlap (plus
    a gap), the label of the higher point upwards, and moves a label off any point marker
    it covers; offsets stay in points, so the result holds at any figure size.
    """
    fig = ax.figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    to_points = 72.0 / fig.dpi
    points = [ax.transData.transform(label.xy) for label in labels]  # display pixels
    radius = MARKER_RADIUS_PT / to_points
    for _ in range(rounds):
        # The text's own box: an Annotation's extent also spans its leader line.
        boxes = [Text.get_window_extent(label, renderer) for label in labels]
        moved = False
        for i in range(len(labels)):
            for j in range(i + 1, len(labels)):
                a, b = boxes[i], boxes[j]
                if not a.overlaps(b):
                    continue
                upper, lower = (i, j) if _anchor_y(labels[i]) >= _anchor_y(labels[j]) else (j, i)
                overlap = min(a.y1, b.y1) - max(a.y0, b.y0) + LABEL_GAP_PX
                _shift(labels[upper], overlap / 2 * to_points)
                _shift(labels[lower], -overlap / 2 * to_points)
                moved = True
            step = _off_points(boxes[i], points, radius)
            if step:
                _shift(labels[i], step * to_points)
                moved = True
        if not moved:
            return
        fig.canvas.draw()


def _off_points(box: Any, points: list[Any], radius: float) -> float:
    """Pixels to move a label box up (+) or down (-) off the first marker it covers; 0 if none."""
    for px, py in points:
        if box.x0 - radius < px < box.x1 + radius and box.y0 - radius < py < box.y1 + radius:
            if (box.y0 + box.y1) / 2 >= py:
                return py + radius - box.y0 + LABEL_GAP_PX
            return -(box.y1 - (py - radius) + LABEL_GAP_PX)
    return 0.0


def _anchor_y(label: Annotation) -> tuple[float, float]:
    # Ties (the same mIoU) break by x, so the order never depends on the loop's.
    return (label.xy[1], label.xy[0])


def _shift(label: Annotation, dy_points: float) -> None:
    x, y = label.xyann
    label.xyann = (x, y + dy_points)


def draw_miou_against(
    summary: pd.DataFrame, column: str, xlabel: str, scale: float = 1.0, caption: str = ""
) -> Figure | None:
    """The figure of plot_miou_against, unsaved (tests read its artists)."""
    rows = summary[summary["miou_mean"].notna() & summary[column].notna()]
    if rows.empty:
        return None
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(7.2, 4.6))
        # Colours follow the full head order, as in the curves figure.
        palette = dict(zip(summary["head"], sns.color_palette(n_colors=len(summary)), strict=True))
        labels = []
        for row in rows.itertuples(index=False):
            x = getattr(row, column) / scale
            # One seed has no interval: draw the point without a bar rather than a fake one.
            err = None if math.isnan(row.miou_ci) else row.miou_ci
            ax.errorbar(
                x,
                row.miou_mean,
                yerr=err,
                fmt="s" if row.baseline else "o",
                color=palette[row.head],
                capsize=4,
                label=row.head,
            )
            labels.append(
                ax.annotate(
                    row.head,
                    (x, row.miou_mean),
                    xytext=(7, 0),
                    textcoords="offset points",
                    va="center",
                    fontsize=9,
                    # Readable where it crosses another head's error bar.
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.6},
                    arrowprops={"arrowstyle": "-", "color": "0.55", "lw": 0.6, "shrinkB": 4},
                )
            )
        # From zero: a cost axis that starts at the cheapest head makes small gaps look large.
        ax.set_xlim(0, rows[column].max() / scale * 1.15)
        ax.set_xlabel(xlabel)
        # mIoU lies in [0, 100]: an interval from few seeds may reach past it, the axis not.
        low, high = ax.get_ylim()
        ax.set_ylim(max(low, 0.0), min(high, 100.0))
        ax.set_ylabel("mIoU (%), mean ± 95% CI over seeds")
        # Outside the axes: inside, it covered error bars.
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="head")
        add_caption(fig, caption)
        repel_labels(ax, labels)
    return fig


def add_caption(fig: Figure, caption: str) -> None:
    """The run context (device, torch, threads, seeds) under the figure, as a reader needs it."""
    if not caption:
        return
    # Below everything the axes draw (rotated tick labels reach under the figure's edge).
    renderer = fig.canvas.get_renderer()
    lowest = min((ax.get_tightbbox(renderer).y0 for ax in fig.axes), default=0.0)
    top = min(-0.02, fig.transFigure.inverted().transform((0.0, lowest))[1] - 0.02)
    fig.text(0.01, top, caption, fontsize=7.5, va="top", wrap=True)


def plot_miou_against(
    summary: pd.DataFrame,
    column: str,
    xlabel: str,
    path: Path,
    scale: float = 1.0,
    caption: str = "",
) -> Path | None:
    """mIoU (mean, 95% CI bars) against a per-head cost; None when no head has both values."""
    fig = draw_miou_against(summary, column, xlabel, scale, caption)
    return None if fig is None else save_figure(fig, path)


def plot_curves(
    curves: pd.DataFrame, path: Path, heads: list[str] | None = None, caption: str = ""
) -> Path | None:
    """Training loss and evaluation mIoU against iteration, mean over seeds with ±1 sd band."""
    loss = curves[curves["metric"] == "loss"]
    miou = curves[curves["metric"] == "mIoU"]
    if loss.empty and miou.empty:
        return None
    order = heads or list(dict.fromkeys(curves["head"]))
    with sns.axes_style("whitegrid"):
        fig, (ax_loss, ax_miou) = plt.subplots(1, 2, figsize=(11, 4.2))
        for ax, data, ylabel in (
            (ax_loss, loss, "training loss"),
            (ax_miou, miou, "validation mIoU (%)"),
        ):
            if data.empty:
                ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes)
            else:
                sns.lineplot(
                    data=data,
                    x="iteration",
                    y="value",
                    hue="head",
                    hue_order=[h for h in order if h in set(data["head"])],
                    errorbar="sd",
                    marker="o" if data is miou else None,
                    ax=ax,
                )
                ax.legend(fontsize=8)
            ax.set_xlabel("iteration")
            ax.set_ylabel(ylabel)
        ax_loss.set_title("loss (mean over seeds, band = ±1 sd)", fontsize=9)
        ax_miou.set_title("mIoU at evaluation points", fontsize=9)
        add_caption(fig, caption)
    return save_figure(fig, path)


def plot_sweep_heatmap(table: pd.DataFrame, param: str, path: Path, caption: str = "") -> Path:
    """Heat map of mean mIoU: rows = trained heads, columns = values of the swept parameter."""
    with sns.axes_style("white"):
        width = 1.6 + 0.9 * max(len(table.columns), 1)
        height = 1.2 + 0.6 * max(len(table.index), 1)
        fig, ax = plt.subplots(figsize=(max(width, 4.0), max(height, 2.5)))
        sns.heatmap(
            table.astype(float),
            annot=True,
            fmt=".1f",
            cmap="viridis",
            cbar_kws={"label": "mIoU (%), mean over seeds"},
            ax=ax,
        )
        ax.set_xlabel(f"{param} at evaluation")
        ax.set_ylabel("trained head")
        add_caption(fig, caption)
    return save_figure(fig, path)
