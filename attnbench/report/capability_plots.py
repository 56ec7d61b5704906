"""The capability report's figures: every seed's long-range mIoU per head (seeds.png), and
each head's engagement over training (engagement.png)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..figures import plt, save_figure
from .capability import BASELINE, GATE_CLOSED, probe_chance
from .plots import add_caption
from .solve import solve_threshold
from .stats import load_curves


def head_colours(heads: list[str]) -> dict[str, tuple]:
    """One colour a head. A head named `<x>-open` (the gate ablation's naming) takes the
    light shade of `<x>`'s colour, so each module's two settings read as a pair."""
    bases = list(dict.fromkeys(h.removesuffix("-open") for h in heads))
    pairs = plt.get_cmap("tab20").colors  # (dark, light) shades of 10 hues
    return {
        h: pairs[(2 * bases.index(h.removesuffix("-open")) + h.endswith("-open")) % 20]
        for h in heads
    }


def plot_seeds(seeds: pd.DataFrame, path: Path, caption: str = "") -> Path | None:
    """Per probe, a strip of every seed's long-range mIoU per head (filled: solved), its
    score with the module knocked out (grey x), the chance and the solve-threshold lines."""
    if seeds.empty:
        return None
    probes = list(dict.fromkeys(seeds["probe"]))
    heads = list(dict.fromkeys(seeds["head"]))
    colours = head_colours(heads)
    width = max(6.0, 0.55 * len(heads) + 2.5)
    fig, axes = plt.subplots(len(probes), 1, figsize=(width, 4.0 * len(probes)), squeeze=False)
    rng = np.random.default_rng(0)  # the jitter only spreads equal points apart
    for ax, probe in zip(axes[:, 0], probes, strict=True):
        rows = seeds[seeds["probe"] == probe]
        order = [h for h in heads if h in set(rows["head"])]
        for x, head in enumerate(order):
            _strip(ax, x, rows[rows["head"] == head], colours[head], rng)
        _threshold_lines(ax, probe, len(order))
        ax.set_xticks(range(len(order)), order, rotation=35, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_ylabel("long-range mIoU (%)")
        ax.set_title(f"{probe}: every seed (filled: solved; x: module knocked out)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    # Room under each strip for its rotated head names before the next probe's title.
    fig.subplots_adjust(hspace=0.6)
    add_caption(fig, caption)
    return save_figure(fig, path)


def _strip(ax, x: int, mine: pd.DataFrame, colour: tuple, rng: np.random.Generator) -> None:
    jitter = x + rng.uniform(-0.18, 0.18, len(mine))
    solved = mine["solved"].to_numpy(bool)
    scores = mine["long_range_mIoU"].to_numpy(float)
    style = {"s": 22, "zorder": 3}
    ax.scatter(jitter[solved], scores[solved], color=colour, edgecolor="black", linewidth=0.4,
               **style)  # fmt: skip
    ax.scatter(jitter[~solved], scores[~solved], facecolor="white", edgecolor=colour,
               linewidth=1.0, **style)  # fmt: skip
    ax.scatter(jitter, mine["knockout"], s=14, marker="x", color="grey", linewidth=0.8, zorder=2)


def _threshold_lines(ax, probe: str, heads: int) -> None:
    chance = probe_chance(probe)
    threshold = solve_threshold(chance)
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1)
    ax.axhline(threshold, color="black", linestyle=":", linewidth=1)
    right = {"ha": "right", "va": "bottom", "fontsize": 7}
    ax.text(heads - 0.45, chance + 1, f"no context ({chance:.1f})", color="grey", **right)
    ax.text(heads - 0.45, threshold + 1, f"solved at {threshold:.1f}", **right)


def _switch_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """The gate-effect rows of the heads that have them, the engagement rows of the rest."""
    gated = set(curves.loc[curves["metric"] == "gate_effect", "head"])
    keep = (curves["metric"] == "gate_effect") | (
        (curves["metric"] == "engagement") & ~curves["head"].isin(gated)
    )
    return curves[keep & (curves["head"] != BASELINE)]


def plot_engagement(
    suite_dir: Path, probes: list[str], path: Path, caption: str = ""
) -> Path | None:
    """Against iteration, median over seeds, one panel per probe: each head's gate effect
    where it was recorded (a module with gates), its engagement otherwise."""
    curves = [(p, load_curves(Path(suite_dir) / p / "curves.csv")) for p in probes]
    curves = [(p, _switch_curves(c)) for p, c in curves if c is not None]
    curves = [(p, c) for p, c in curves if not c.empty]
    if not curves:
        return None
    colours = head_colours(list(dict.fromkeys(h for _, c in curves for h in c["head"])))
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves) + 1.6, 4), squeeze=False)
    for ax, (probe, data) in zip(axes[0], curves, strict=True):
        for head, rows in data.groupby("head", sort=False):
            middle = rows.groupby("iteration")["value"].median()
            ax.plot(
                middle.index, middle.values, "o-", markersize=3, label=head, color=colours[head]
            )
        ax.axhline(
            GATE_CLOSED,
            color="grey",
            linestyle=":",
            linewidth=1,
            label=f"{GATE_CLOSED}: below, the gate is closed",
        )
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)  # a ratio of norms: nothing below 0 to show
        ax.set_xlim(left=0)
        ax.set_title(f"{probe}: engagement over training")
        ax.set_xlabel("iteration")
        ax.set_ylabel("gate effect, or engagement (no gates)\nmedian over seeds")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    add_caption(fig, caption)
    return save_figure(fig, path)
