"""The text of summary.md and report.md, one function per section, from the Results
record and the Figures drawn from it. Nothing here computes a number or draws."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

import modules

from ..markdown import md_table
from .context import describe_memory_kind
from .drawing import Figures
from .published import published_section
from .results import LEVEL, Results


def _fmt(value: float, digits: int = 2) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


THROUGHPUT_NOTE = (
    "Training img/s: each run's median over its steady log intervals (evaluations, "
    "checkpoints and the first, warm-up interval left out), mean over seeds, with the "
    "mean quartiles; '!' marks a head with a contended run (IQR over 25% of its median: "
    "the machine was shared), whose rate is not the head's."
)


def _throughput(r: Any) -> str:
    """Median images/s over steady log intervals (seed mean), its IQR; '!' when contended."""
    text = _fmt(r.train_images_per_s, 1)
    q1, q3 = (
        getattr(r, "train_images_per_s_q1", math.nan),
        getattr(r, "train_images_per_s_q3", math.nan),
    )
    if not (math.isnan(q1) or math.isnan(q3)):
        text += f" ({q1:.1f}–{q3:.1f})"
    return text + (" !" if getattr(r, "contended", 0) > 0 else "")


def _sig(value: float) -> str:
    """Three significant figures without scientific notation (GMACs, millions of parameters)."""
    if value is None or math.isnan(value):
        return "—"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}"
    digits = max(0, 2 - math.floor(math.log10(abs(value))))
    return f"{value:.{digits}f}"


def fmt_miou(row: Any) -> str:
    if row.n == 0:
        return "— (no finished run)"
    if row.n == 1:
        return f"{row.miou_mean:.2f} (1 seed, no CI)"
    return f"{row.miou_mean:.2f} ± {row.miou_ci:.2f}"


def fmt_delta(row: Any, has_baseline: bool) -> str:
    if row.baseline:
        return "baseline"
    if not has_baseline or row.delta_n == 0:
        return "—"
    if row.delta_n == 1:
        return f"{row.delta_mean:+.2f} (1 pair)"
    return f"{row.delta_mean:+.2f} ± {row.delta_ci:.2f}"


def _seeds(row: Any) -> str:
    text = str(row.n)
    return f"{text} (+{row.diverged} diverged)" if row.diverged else text


def _rank(r: Any) -> str:
    return "—" if r.rank == 0 else f"{r.rank}{'=' if r.tied_with else ''}"


def render_summary_md(res: Results) -> str:
    """summary.md: one row per head, from runs.csv."""
    summary, context, baseline = res.summary, res.context, res.baseline
    base = f"`{baseline}`" if baseline else "baseline (none in this experiment)"
    columns = {
        "head": lambda r: r.head,
        "module": lambda r: r.module,
        "seeds": _seeds,
        "mIoU mean": lambda r: _fmt(r.miou_mean),
        "mIoU sd": lambda r: _fmt(r.miou_std),
        f"Δ mIoU vs {base}": lambda r: fmt_delta(r, baseline is not None),
        "params (M)": lambda r: _sig(r.params / 1e6),
        "train img/s (IQR)": _throughput,
    }
    rows = [[f(r) for f in columns.values()] for r in summary.itertuples(index=False)]
    notes = (
        f"mIoU in %, mean and sample sd over seeds; Δ is paired by seed, ± the half-width "
        f"of its {LEVEL:.0%} Student-t interval. Parameters are the head's, module included. "
        f"{THROUGHPUT_NOTE}"
    )
    table = md_table(list(columns), rows)
    return "\n".join(["# Summary", "", *context, "", table, "", notes, ""])


def summary_table(summary: pd.DataFrame, baseline: str | None, kinds: dict[str, str]) -> str:
    """The report's table: best first, with costs; memory kinds per row only when they differ."""
    several_kinds = len(set(kinds.values())) > 1

    def memory(r: Any) -> str:
        kind = f" ({kinds[r.head]})" if several_kinds and r.head in kinds else ""
        return _fmt(r.train_memory_mb, 0) + kind

    columns = {
        "rank": _rank,
        "head": lambda r: f"**{r.head}**" if r.baseline else r.head,
        "module": lambda r: r.module,
        "seeds": _seeds,
        f"mIoU ± {LEVEL:.0%} CI": fmt_miou,
        "sd": lambda r: _fmt(r.miou_std),
        "Δ vs baseline ± CI": lambda r: fmt_delta(r, baseline is not None),
        "GMACs head": lambda r: _sig(r.macs / 1e9),
        "GMACs module": lambda r: _sig(r.macs_module / 1e9),
        "params head (M)": lambda r: _sig(r.params / 1e6),
        "params module (M)": lambda r: _sig(r.params_module / 1e6),
        "train memory (MB)": memory,
        "train img/s (IQR)": _throughput,
        "overlaps with": lambda r: ", ".join(r.tied_with) or "—",
    }
    ordered = summary.sort_values("rank", key=lambda s: s.replace(0, 10**9))
    rows = [[f(r) for f in columns.values()] for r in ordered.itertuples(index=False)]
    return md_table(list(columns), rows)


def title_section(res: Results) -> list[str]:
    name = res.runs["experiment"].iloc[0] or res.exp_dir.name
    return [f"# Experiment `{name}`", "", *res.context, ""]


def summary_section(res: Results) -> list[str]:
    """The ranked table with costs, and what its columns mean."""
    base_text = (
        f"paired by seed against the baseline `{res.baseline}` (the head whose module is "
        "`none`), ± the half-width of the interval of the paired differences"
        if res.baseline
        else "not available: no head uses the module `none`"
    )
    memory_text = (
        "; ".join(describe_memory_kind(k) for k in res.kind_set)
        if res.kind_set
        else "its kind is not recorded (no memory_kind in runs.csv)"
    )
    return [
        "## Summary",
        "",
        summary_table(res.summary, res.baseline, res.kinds),
        "",
        f"- mIoU in %: mean over seeds ± half-width of the {LEVEL:.0%} Student-t interval; "
        "sd = sample standard deviation.",
        f"- Δ: {base_text}.",
        "- rank by mean mIoU; `=` marks a head whose interval overlaps another head's "
        "(listed under 'overlaps with'): the data do not order those heads.",
        "- MACs: multiply-accumulates of the head (context module included) per image, in "
        "units of 10^9 (GMACs), at the resolution above; parameters of the head in millions.",
        f"- train memory: mean over seeds, {memory_text}.",
        "- train img/s: training throughput, mean over seeds; it counts loading each batch "
        "(synthetic images are drawn once, before the first run) and leaves out "
        "evaluations and checkpoints.",
        "",
    ]


def diverged_section(res: Results) -> list[str]:
    out = ["## Diverged runs", ""]
    if res.diverged.empty:
        return [*out, "None.", ""]
    rows = [
        [r.head, r.module, str(r.seed), f"{r.iteration:.0f}"] for r in res.diverged.itertuples()
    ]
    out += [md_table(["head", "module", "seed", "loss became NaN at iteration"], rows), ""]
    return [*out, "These runs are left out of every mean, interval and figure.", ""]


def per_class_section(res: Results) -> list[str]:
    classes = res.per_class
    out = ["## Per-class IoU (%, mean over seeds)", ""]
    if classes.empty:
        return [*out, "No per-class IoU rows in runs.csv.", ""]
    rows = [[str(c), *(_fmt(v, 1) for v in classes.loc[c])] for c in classes.index]
    return [*out, md_table(["class", *classes.columns], rows), ""]


def sweep_sections(res: Results, figs: Figures) -> list[str]:
    """One section per evaluation sweep: the table and its heat map."""
    out: list[str] = []
    for param, labelled in res.sweeps.items():
        rows = [[str(i), *(_fmt(v, 2) for v in labelled.loc[i])] for i in labelled.index]
        out += [f"## Evaluation sweep: {param}", ""]
        out += [
            f"Mean mIoU (%) over seeds; rows: trained head, columns: {param} at evaluation.",
            "",
        ]
        out += [md_table([f"head \\ {param}", *map(str, labelled.columns)], rows), ""]
        out += [f"![mIoU heat map over {param}]({figs.sweeps[param].name})", ""]
    return out


def cost_figures_section(figs: Figures) -> list[str]:
    out = ["## Accuracy against cost", ""]
    for column, png in figs.cost.items():
        out += [f"![mIoU against {column}]({png.name})" if png else f"No {column} values.", ""]
    return out


def curves_section(res: Results, figs: Figures) -> list[str]:
    out = ["## Training curves", ""]
    if res.curves is None:
        return [*out, "No curves.csv.", ""]
    png = figs.curves
    return [
        *out,
        f"![training curves]({png.name})" if png else "curves.csv has no loss or mIoU.",
        "",
    ]


def maps_section(figs: Figures) -> list[str]:
    """The attention-map figures: what they show, or why they were not redrawn."""
    out = ["## Attention maps", "", figs.maps_note, ""]
    for k, figure in enumerate(figs.map_images, start=1):
        out += [f"![attention maps, image {k}]({figure.name})", ""]
    for module, figure in figs.extra_maps:
        extra = modules.REGISTRY[module].EXTRA_MAP
        out += [f"![{module.upper()} {extra}]({figure.name})", ""]
    return out


def render_report(res: Results, figs: Figures) -> str:
    """report.md, section by section."""
    out = [
        *title_section(res),
        *summary_section(res),
        *published_section(res.summary, res.config),
        *diverged_section(res),
        *per_class_section(res),
        *sweep_sections(res, figs),
        *cost_figures_section(figs),
        *curves_section(res, figs),
        *maps_section(figs),
    ]
    return "\n".join(out)
