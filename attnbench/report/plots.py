"""Figures of an experiment, drawn from the summary and curve tables (PNG, headless)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns

from ..figures import plt, save_figure


def plot_miou_against(
    summary: pd.DataFrame, column: str, xlabel: str, path: Path, scale: float = 1.0
) -> Path | None:
    """mIoU (mean, 95% CI bars) against a per-head cost; None when no head has both values."""
    rows = summary[summary["miou_mean"].notna() & summary[column].notna()]
    if rows.empty:
        return None
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6.4, 4.4))
        # Colours follow the full head order, as in the curves figure.
        palette = dict(zip(summary["head"], sns.color_palette(n_colors=len(summary)), strict=True))
        for row in rows.itertuples(index=False):
            colour = palette[row.head]
            x = getattr(row, column) / scale
            # One seed has no interval: draw the point without a bar rather than a fake one.
            err = None if math.isnan(row.miou_ci) else row.miou_ci
            marker = "s" if row.baseline else "o"
            ax.errorbar(
                x, row.miou_mean, yerr=err, fmt=marker, color=colour, capsize=4, label=row.head
            )
            ax.annotate(
                row.head,
                (x, row.miou_mean),
                textcoords="offset points",
                xytext=(6, 4),
                fontsize=8,
            )
        ax.set_xlabel(xlabel)
        ax.set_ylabel("mIoU (%), mean ± 95% CI over seeds")
        ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def plot_curves(curves: pd.DataFrame, path: Path, heads: list[str] | None = None) -> Path | None:
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
    return save_figure(fig, path)


def plot_sweep_heatmap(table: pd.DataFrame, param: str, path: Path) -> Path:
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
    return save_figure(fig, path)
