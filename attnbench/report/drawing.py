"""Every PNG of report.md, drawn from the Results record: the sweep heat maps, mIoU
against cost, the training curves and (from checkpoints, when there are any) the
attention maps. What was drawn goes back as a Figures record, for the text to name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from . import plots
from .map_figures import extra_figures, image_figures
from .results import Results

COST_FIGURES = (  # (summary column, axis label, scale, file)
    ("macs", "head GMACs per image", 1e9, "miou_vs_macs.png"),
    ("train_memory_mb", "training memory", 1.0, "miou_vs_memory.png"),
)


@dataclass(frozen=True)
class Figures:
    """The figures drawn (or found) for report.md; None where there was nothing to draw."""

    sweeps: dict[str, Path]  # swept parameter -> heat map
    cost: dict[str, Path | None]  # summary column -> mIoU against it
    curves: Path | None
    maps_note: str  # what the attention-map figures show, or why they were not rebuilt
    map_images: list[Path]  # one attention-map figure per validation image
    extra_maps: list[tuple[str, Path]]  # (module, its EXTRA_MAP figure)


def draw_figures(res: Results, maps: bool = True, num_images: int = 3) -> Figures:
    """Draw every figure into res.exp_dir."""
    sweeps = {param: _sweep_figure(res, param) for param in res.sweeps}
    cost = {figure[0]: _cost_figure(res, *figure) for figure in COST_FIGURES}
    curves = _curves_figure(res)
    maps_note = (
        _render_maps(res.exp_dir, num_images, res.heads, res.caption)
        if maps
        else "Attention maps not rebuilt (--no-maps)."
    )
    return Figures(
        sweeps=sweeps,
        cost=cost,
        curves=curves,
        maps_note=maps_note,
        map_images=image_figures(res.exp_dir),
        extra_maps=extra_figures(res.exp_dir),
    )


def _sweep_figure(res: Results, param: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in param)
    path = res.exp_dir / f"sweep_{safe}.png"
    return plots.plot_sweep_heatmap(res.sweeps[param], param, path, res.caption)


def _cost_figure(res: Results, column: str, label: str, scale: float, file: str) -> Path | None:
    if column == "train_memory_mb":
        label = f"{label} (MB; {', '.join(res.kind_set) or 'kind not recorded'})"
    return plots.plot_miou_against(
        res.summary, column, label, res.exp_dir / file, scale, res.caption
    )


def _curves_figure(res: Results) -> Path | None:
    if res.kept_curves is None:
        return None
    path = res.exp_dir / "curves.png"
    return plots.plot_curves(res.kept_curves, path, res.heads, res.caption)


def _render_maps(exp_dir: Path, num_images: int, heads: list[str], caption: str) -> str:
    """Rebuild the attention-map figures when checkpoints allow; a line for report.md."""
    try:
        from .maps import render_attention_maps

        note = render_attention_maps(exp_dir, num_images, heads, caption)
    except Exception as err:  # the figure is a bonus: the tables must still be written
        note = f"Attention maps not rebuilt: {type(err).__name__}: {err}"
        print(f"attnbench report: warning: {note}", file=sys.stderr)
    return note
