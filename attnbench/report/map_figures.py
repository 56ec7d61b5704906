"""Drawing the attention maps: one figure per validation image, and a module's extra map.

Per image: the input with the query pixel, the label, a class-colour legend and the
colour bar of the maps, then per head its prediction beside its module's map. Each map
is divided by its own largest weight, so one colour bar reads every map: softmax
weights over a few positions (CCNet, ISA) and over all of them (Non-local, DANet)
differ by orders of magnitude and would otherwise need a bar each. Categorical maps
(a module's MAIN_MAP_ARGMAX: EMA's base each pixel is most responsible to) use one
colour per channel instead. A module with an EXTRA_MAP gets a figure of that map's first
channels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Patch

import modules

from ..experiment.layout import RunFolder
from ..figures import plt, save_figure
from .plots import add_caption

if TYPE_CHECKING:
    import torch

PAIRS_PER_ROW = 3  # heads per row, each a (prediction, map) pair of panels
PANEL_INCHES = 2.6
TITLE_SIZE = 10
MAP_CMAP = "magma"
FIGURE_GLOB = "attention_maps_*.png"  # attention_maps_1.png, ... one per image


# What stands in a map's place for a module without one (a module not named: "no map").
NO_MAP = {"none": "no map (identity)", "pool": "no map (one vector\nfor every pixel)"}


@dataclass
class HeadMaps:
    """One head's outputs per image: prediction (H, W) and main map (H, W) at image size."""

    run: RunFolder
    module: str  # its registry name
    predictions: list[np.ndarray]
    maps: list[np.ndarray | None]
    map_title: str
    categorical: bool
    extra: list[np.ndarray] | None  # EXTRA_MAP: (K', H, W) first channels per image


def image_figure_path(out_dir: Path, index: int) -> Path:
    """The figure of the index-th drawn image (0-based), named from 1."""
    return out_dir / f"attention_maps_{index + 1}.png"


def extra_figures(out_dir: Path) -> list[tuple[str, Path]]:
    """(module, figure) for each module with an EXTRA_MAP whose figure is in out_dir."""
    found = []
    for name, cls in modules.REGISTRY.items():
        path = out_dir / f"attention_maps_{name}.png"
        if getattr(cls, "EXTRA_MAP", None) and path.is_file():
            found.append((name, path))
    return found


def image_figures(out_dir: Path) -> list[Path]:
    """The per-image figures in out_dir, in image order."""
    found = [p for p in out_dir.glob(FIGURE_GLOB) if p.stem.rsplit("_", 1)[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.stem.rsplit("_", 1)[-1]))


def denormalise(image: torch.Tensor) -> np.ndarray:
    # Imported here: listing the figures (the report's table of contents) needs no torch.
    import torch

    from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, 3)


def class_cmap(num_classes: int) -> ListedColormap:
    base = plt.get_cmap("tab20").colors
    colours = [(0.0, 0.0, 0.0), *[base[i % len(base)] for i in range(max(num_classes - 1, 1))]]
    # Ignored pixels (label 255, masked) show white.
    return ListedColormap(colours[:num_classes] or colours[:1]).with_extremes(bad="white")


def _mark(ax: Any, query: tuple[int, int]) -> None:
    ax.plot(query[1], query[0], marker="x", color="cyan", markersize=11, mew=3)


def _panel(fig: Figure, spec: Any, title: str) -> Any:
    ax = fig.add_subplot(spec)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=TITLE_SIZE)
    return ax


def _legends(fig: Figure, grid: Any, class_names: tuple[str, ...], cmap: Any) -> None:
    """The class colours and the map colour bar, in the first row beside input and label."""
    ax = fig.add_subplot(grid[0, 2:4])
    handles = [
        Patch(facecolor=cmap(i), edgecolor="0.4", label=n) for i, n in enumerate(class_names)
    ]
    ax.legend(handles=handles, loc="center", fontsize=9, title="classes", frameon=False)
    ax.axis("off")
    ax = fig.add_subplot(grid[0, 4:6])
    ax.axis("off")
    scalar = plt.cm.ScalarMappable(norm=Normalize(0.0, 1.0), cmap=MAP_CMAP)
    bar = fig.colorbar(scalar, cax=ax.inset_axes([0.05, 0.62, 0.9, 0.12]), orientation="horizontal")
    bar.set_label("map weight / the map's largest weight", fontsize=9)
    note = "categorical maps: the argmax over channels, one colour each"
    ax.text(0.5, 0.12, note, ha="center", va="center", fontsize=8.5, transform=ax.transAxes)


def _head_panels(fig: Figure, grid: Any, k: int, head: HeadMaps, index: int, query, classes):
    row, col = 1 + k // PAIRS_PER_ROW, 2 * (k % PAIRS_PER_ROW)
    name = head.run.head
    _panel(fig, grid[row, col], f"{name}: prediction").imshow(head.predictions[index], **classes)
    weights = head.maps[index]
    if weights is None:
        _panel(fig, grid[row, col + 1], f"{name}: {NO_MAP.get(head.module, 'no map')}").axis("off")
        return
    ax = _panel(fig, grid[row, col + 1], f"{name}: {head.map_title}")
    if head.categorical:
        ax.imshow(weights, cmap="tab20", interpolation="nearest")
    else:
        peak = float(np.max(weights))
        scaled = weights / peak if peak > 0 else weights
        ax.imshow(scaled, cmap=MAP_CMAP, norm=Normalize(0.0, 1.0), interpolation="nearest")
    _mark(ax, query)


def draw_image(
    heads: list[HeadMaps], index: int, sample: tuple, query: tuple[int, int], names, title: str
) -> Figure:
    """The figure of one validation image (index into each head's outputs)."""
    image, label = sample
    cols = 2 * PAIRS_PER_ROW
    rows = 1 + math.ceil(len(heads) / PAIRS_PER_ROW)
    fig = plt.figure(figsize=(PANEL_INCHES * cols, PANEL_INCHES * rows + 0.5))
    grid = fig.add_gridspec(rows, cols, hspace=0.3, wspace=0.08)
    cmap = class_cmap(len(names))
    classes = {"cmap": cmap, "vmin": 0, "vmax": len(names) - 1, "interpolation": "nearest"}
    ax = _panel(fig, grid[0, 0], "input (× = query pixel)")
    ax.imshow(denormalise(image))
    _mark(ax, query)
    from ..data.transforms import IGNORE_INDEX

    label_map = np.ma.masked_equal(label.cpu().numpy(), IGNORE_INDEX)
    _panel(fig, grid[0, 1], "label").imshow(label_map, **classes)
    _legends(fig, grid, names, cmap)
    for k, head in enumerate(heads):
        _head_panels(fig, grid, k, head, index, query, classes)
    fig.suptitle(title, fontsize=TITLE_SIZE + 1)
    return fig


def draw_extra_maps(head: HeadMaps, samples: list, out: Path, caption: str = "") -> Path:
    """The first channels of the head's EXTRA_MAP per image (EMA: which pixels each base
    gathers), on one 0-1 scale."""
    extra = modules.REGISTRY[head.module].EXTRA_MAP
    rows, k = len(samples), head.extra[0].shape[0]
    fig, axes = plt.subplots(rows, 1 + k, figsize=(1.8 * (1 + k) + 0.8, 1.8 * rows + 0.5))
    axes = np.asarray(axes).reshape(rows, 1 + k)
    for r, (image, _label) in enumerate(samples):
        axes[r, 0].imshow(denormalise(image))
        for j in range(k):
            shown = axes[r, 1 + j].imshow(head.extra[r][j], cmap=MAP_CMAP, vmin=0.0, vmax=1.0)
    axes[0, 0].set_title("input", fontsize=TITLE_SIZE)
    for j in range(k):
        axes[0, 1 + j].set_title(f"channel {j}", fontsize=TITLE_SIZE)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=axes, shrink=0.8, label=f"{extra} (0-1)")
    run = head.run
    fig.suptitle(f"{run.head} seed {run.seed}: the first {k} channels of its {extra!r} map")
    add_caption(fig, caption)
    return save_figure(fig, out)


def draw_all(
    heads: list[HeadMaps],
    samples: list,
    queries: list,
    names,
    indices: list[int],
    out_dir: Path,
    caption: str = "",
) -> list[Path]:
    """Every image's figure and, for a head with an EXTRA_MAP, that map's figure; stale
    figures are removed."""
    written = []
    for i, (sample, query) in enumerate(zip(samples, queries, strict=True)):
        seeds = ", ".join(sorted({f"seed {h.run.seed}" for h in heads}))
        title = (
            f"Validation image {indices[i]}: each head's prediction and its module's map for "
            f"the query pixel × ({seeds})"
        )
        fig = draw_image(heads, i, sample, query, names, title)
        add_caption(fig, caption)
        written.append(save_figure(fig, image_figure_path(out_dir, i)))
    # A figure of an image or a head no longer drawn would mislead: remove it.
    for stale in [*image_figures(out_dir), out_dir / "attention_maps.png"]:
        if stale not in written:
            stale.unlink(missing_ok=True)
    extra = next((h for h in heads if h.extra), None)  # the first head with an EXTRA_MAP
    if extra is not None:
        path = out_dir / f"attention_maps_{extra.module}.png"
        written.append(draw_extra_maps(extra, samples, path, caption))
    for _name, stale in extra_figures(out_dir):
        if stale not in written:
            stale.unlink(missing_ok=True)
    return written
