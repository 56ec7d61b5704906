"""The sections of summary.md and report.md, one function each, from runs.csv and curves.csv."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

import modules

from ..markdown import md_table
from . import plots
from .context import describe_memory_kind
from .map_figures import extra_figures, image_figures
from .stats import per_class_iou, split_diverged, sweep_tables

LEVEL = 0.95


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


def render_summary_md(summary: pd.DataFrame, context: list[str], baseline: str | None) -> str:
    """summary.md: one row per head, from runs.csv."""
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


def _sweep_row_labels(table: pd.DataFrame, param: str, config: dict) -> list[str]:
    """Head names, with the trained value of what the swept attribute replaces at evaluation
    (its module's EVAL_OVERRIDES; else the attribute itself) when the config has it."""
    heads = {h.get("name"): h for h in config.get("heads") or [] if isinstance(h, dict)}
    labels = []
    for head in table.index:
        spec = heads.get(head, {})
        cls = modules.REGISTRY.get(spec.get("module"))
        trained = dict(cls.EVAL_OVERRIDES if cls else ()).get(param, param)
        value = (spec.get("params") or {}).get(trained)
        labels.append(f"{head} ({trained}={value})" if value is not None else str(head))
    return labels


def _render_maps(exp_dir: Path, num_images: int, heads: list[str]) -> str:
    """Rebuild the attention-map figures when checkpoints allow; a line for report.md."""
    try:
        from .maps import render_attention_maps

        note = render_attention_maps(exp_dir, num_images=num_images, head_order=heads)
    except Exception as err:  # the figure is a bonus: the tables must still be written
        note = f"Attention maps not rebuilt: {type(err).__name__}: {err}"
        print(f"attnbench report: warning: {note}", file=sys.stderr)
    return note


@dataclass(frozen=True)
class Results:
    """What report.md is built from: runs.csv and curves.csv, summarised, with context."""

    exp_dir: Path
    runs: pd.DataFrame
    curves: pd.DataFrame | None
    summary: pd.DataFrame
    baseline: str | None
    kinds: dict[str, str]  # head -> memory kind
    context: list[str]  # the lines under the title: device, seeds, data, resolution
    config: dict  # the experiment's config.yaml, as a plain dict

    @property
    def kind_set(self) -> list[str]:
        return list(dict.fromkeys(self.kinds.values()))


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
    _, diverged = split_diverged(res.runs)
    out = ["## Diverged runs", ""]
    if diverged.empty:
        return [*out, "None.", ""]
    rows = [[r.head, r.module, str(r.seed), f"{r.iteration:.0f}"] for r in diverged.itertuples()]
    out += [md_table(["head", "module", "seed", "loss became NaN at iteration"], rows), ""]
    return [*out, "These runs are left out of every mean, interval and figure.", ""]


def per_class_section(res: Results) -> list[str]:
    classes = per_class_iou(res.runs)
    out = ["## Per-class IoU (%, mean over seeds)", ""]
    if classes.empty:
        return [*out, "No per-class IoU rows in runs.csv.", ""]
    rows = [[str(c), *(_fmt(v, 1) for v in classes.loc[c])] for c in classes.index]
    return [*out, md_table(["class", *classes.columns], rows), ""]


def figure_caption(res: Results) -> str:
    """The report's context lines (device, torch, threads, seeds, code), one per line."""
    return "\n".join(line.removeprefix("- ") for line in res.context)


def sweep_sections(res: Results) -> list[str]:
    """One section per evaluation sweep: the table and its heat map."""
    out: list[str] = []
    for param, table in sweep_tables(res.runs).items():
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in param)
        labelled = table.set_axis(_sweep_row_labels(table, param, res.config), axis=0)
        path = res.exp_dir / f"sweep_{safe}.png"
        png = plots.plot_sweep_heatmap(labelled, param, path, figure_caption(res))
        rows = [[str(i), *(_fmt(v, 2) for v in labelled.loc[i])] for i in labelled.index]
        out += [f"## Evaluation sweep: {param}", ""]
        out += [
            f"Mean mIoU (%) over seeds; rows: trained head, columns: {param} at evaluation.",
            "",
        ]
        out += [md_table([f"head \\ {param}", *map(str, labelled.columns)], rows), ""]
        out += [f"![mIoU heat map over {param}]({png.name})", ""]
    return out


def cost_figures_section(res: Results) -> list[str]:
    out = ["## Accuracy against cost", ""]
    memory_label = f"training memory (MB; {', '.join(res.kind_set) or 'kind not recorded'})"
    caption = figure_caption(res)
    for column, label, scale, file in (
        ("macs", "head GMACs per image", 1e9, "miou_vs_macs.png"),
        ("train_memory_mb", memory_label, 1.0, "miou_vs_memory.png"),
    ):
        path = res.exp_dir / file
        png = plots.plot_miou_against(res.summary, column, label, path, scale, caption)
        out += [f"![mIoU against {column}]({png.name})" if png else f"No {column} values.", ""]
    return out


def curves_section(res: Results) -> list[str]:
    out = ["## Training curves", ""]
    if res.curves is None:
        return [*out, "No curves.csv.", ""]
    _, diverged = split_diverged(res.runs)
    curves = res.curves
    bad = set(zip(diverged["head"], diverged["seed"], strict=True))
    keep = [(h, s) not in bad for h, s in zip(curves["head"], curves["seed"], strict=True)]
    heads = list(res.summary["head"])
    png = plots.plot_curves(curves[keep], res.exp_dir / "curves.png", heads, figure_caption(res))
    return [
        *out,
        f"![training curves]({png.name})" if png else "curves.csv has no loss or mIoU.",
        "",
    ]


def maps_section(res: Results, maps: bool, num_images: int) -> list[str]:
    """The attention-map figures, redrawn when `maps` and the checkpoints allow."""
    note = (
        _render_maps(res.exp_dir, num_images, list(res.summary["head"]))
        if maps
        else "Attention maps not rebuilt (--no-maps)."
    )
    out = ["## Attention maps", "", note, ""]
    for k, figure in enumerate(image_figures(res.exp_dir), start=1):
        out += [f"![attention maps, image {k}]({figure.name})", ""]
    for module, figure in extra_figures(res.exp_dir):
        extra = modules.REGISTRY[module].EXTRA_MAP
        out += [f"![{module.upper()} {extra}]({figure.name})", ""]
    return out
