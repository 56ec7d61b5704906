"""`python -m attnbench report results/<experiment>`: summary.md, report.md and figures.

Every table and figure except the attention maps is a function of runs.csv and
curves.csv; env.json, metrics.json and config.yaml beside them only add context
(device, torch version, threads, what the memory figure measures, the resolution).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ..cost.memory import DESCRIPTIONS
from ..errors import UserError
from ..experiment.layout import run_folders
from ..files import atomic_write_text, read_json
from ..markdown import md_table
from . import plots
from .map_figures import image_figures
from .published import published_section
from .stats import load_curves, load_runs, per_class_iou, split_diverged, summarise, sweep_tables

LEVEL = 0.95


# --- Reading ------------------------------------------------------------------------------


def read_environment(exp_dir: Path) -> dict[str, str]:
    """device, torch, threads, git_commit: the distinct values in runs/*/seed*/env.json."""
    envs = [e for run in run_folders(exp_dir) if isinstance(e := read_json(run.env), dict)]
    found = {"env_files": str(len(envs))}
    for key in ("device", "torch", "threads", "git_commit"):
        values = []
        for env in envs:
            value = env.get(key)
            if key == "git_commit" and value:
                value = f"{value[:12]}{'-dirty' if value.endswith('-dirty') else ''}"
            if key == "device" and env.get("device_name"):
                value = f"{value} ({env['device_name']})"
            if key == "device" and env.get("amp_dtype"):
                value = f"{value}, {env['amp_dtype']} autocast"
            values.append(None if value is None else str(value))
        values = list(dict.fromkeys(v for v in values if v is not None))
        found[key] = " / ".join(values) if values else "not recorded"
    return found


# What the runner's memory kinds (attnbench/costs.py) measure.
MEMORY_KINDS = {
    "cuda_peak_allocated": "torch.cuda.max_memory_allocated over the whole training run, per "
    "GPU: weights, optimizer state, activations and gradients",
    "cpu_saved_for_backward": "bytes autograd saves for backward in one training forward of "
    "the whole model at the per-process batch: activations only, not a peak, as CPU has no "
    "allocator peak",
}


def cost_context(text: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """({head: memory_kind}, distinct MAC-count image sizes) from runs.csv's text rows."""
    kinds = text[text["metric"] == "memory_kind"]
    sizes = text.loc[text["metric"] == "cost_image_size", "value"]
    found = dict(zip(kinds["head"], kinds["value"], strict=True))
    return found, list(dict.fromkeys(v.replace("x", "×") for v in sizes))


def describe_memory_kind(kind: str) -> str:
    """The kind's label with what it measures, when known."""
    meaning = MEMORY_KINDS.get(kind)
    if meaning is None:
        meaning = DESCRIPTIONS.get(kind)
    return f"`{kind}` ({meaning})" if meaning else f"`{kind}`"


def read_experiment_config(exp_dir: Path) -> dict:
    """The resolved config.yaml as a plain dict (context only), or {} when absent or broken."""
    path = exp_dir / "config.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        raw = None
    return raw if isinstance(raw, dict) else {}


# --- Markdown -------------------------------------------------------------------------------


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


def context_lines(
    runs: pd.DataFrame, env: dict[str, str], config: dict, sizes: list[str]
) -> list[str]:
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    lines = [
        f"- device: {env['device']}; torch: {env['torch']}; threads: {env['threads']}"
        + ("" if env["env_files"] != "0" else " (no runs/*/seed*/env.json found)"),
        f"- seeds: {', '.join(map(str, seeds))}; code: git {env['git_commit']}",
    ]
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    if not sizes and data:
        key = "image_size" if data.get("dataset", "synthetic") == "synthetic" else "crop_size"
        value = data.get(key)
        if value:
            side = value if isinstance(value, list) else [value]
            sizes = [f"{side[0]}×{side[-1]}"]
    dataset = f"data: {data.get('dataset', 'synthetic')}; " if data else ""
    if sizes:
        lines.append(f"- {dataset}MACs counted per image at {' / '.join(sizes)}")
    else:
        lines.append(f"- {dataset}resolution of the MAC counts: not recorded")
    return lines


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
    """Head names, with the trained value of the swept parameter when the config has it."""
    trained = param.removeprefix("eval_")
    params = {
        h.get("name"): h.get("params") or {}
        for h in config.get("heads") or []
        if isinstance(h, dict)
    }
    labels = []
    for head in table.index:
        value = params.get(head, {}).get(trained)
        labels.append(f"{head} ({trained}={value})" if value is not None else str(head))
    return labels


# --- Building ----------------------------------------------------------------------------


def _render_maps(exp_dir: Path, num_images: int, heads: list[str]) -> str:
    """Rebuild the attention-map figures when checkpoints allow; a line for report.md."""
    try:
        from .maps import render_attention_maps

        note = render_attention_maps(exp_dir, num_images=num_images, head_order=heads)
    except Exception as err:  # the figure is a bonus: the tables must still be written
        note = f"Attention maps not rebuilt: {type(err).__name__}: {err}"
        print(f"attnbench report: warning: {note}", file=sys.stderr)
    return note


def build_report(exp_dir: Path, *, maps: bool = True, num_images: int = 3) -> Path:
    """Write summary.md, report.md and the PNG figures into `exp_dir`; return report.md."""
    exp_dir = Path(exp_dir)
    runs, text = load_runs(exp_dir / "runs.csv")
    curves = load_curves(exp_dir / "curves.csv")
    env = read_environment(exp_dir)
    config = read_experiment_config(exp_dir)
    kinds, sizes = cost_context(text)
    summary = summarise(runs, LEVEL)
    baseline = next((r.head for r in summary.itertuples() if r.baseline), None)
    context = context_lines(runs, env, config, sizes)
    atomic_write_text(exp_dir / "summary.md", render_summary_md(summary, context, baseline))

    name = runs["experiment"].iloc[0] or exp_dir.name
    out = [f"# Experiment `{name}`", "", *context, "", "## Summary", ""]
    out += [summary_table(summary, baseline, kinds), ""]
    base_text = (
        f"paired by seed against the baseline `{baseline}` (the head whose module is `none`), "
        "± the half-width of the interval of the paired differences"
        if baseline
        else "not available: no head uses the module `none`"
    )
    kind_set = list(dict.fromkeys(kinds.values()))
    memory_text = (
        "; ".join(describe_memory_kind(k) for k in kind_set)
        if kind_set
        else "its kind is not recorded (no memory_kind in runs.csv)"
    )
    out += [
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
    out += published_section(summary, config)

    _, diverged = split_diverged(runs)
    out += ["## Diverged runs", ""]
    if diverged.empty:
        out += ["None.", ""]
    else:
        rows = [
            [r.head, r.module, str(r.seed), f"{r.iteration:.0f}"] for r in diverged.itertuples()
        ]
        out += [md_table(["head", "module", "seed", "loss became NaN at iteration"], rows), ""]
        out += ["These runs are left out of every mean, interval and figure.", ""]

    classes = per_class_iou(runs)
    out += ["## Per-class IoU (%, mean over seeds)", ""]
    if classes.empty:
        out += ["No per-class IoU rows in runs.csv.", ""]
    else:
        rows = [[str(c), *(_fmt(v, 1) for v in classes.loc[c])] for c in classes.index]
        out += [md_table(["class", *classes.columns], rows), ""]

    for param, table in sweep_tables(runs).items():
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in param)
        labelled = table.set_axis(_sweep_row_labels(table, param, config), axis=0)
        png = plots.plot_sweep_heatmap(labelled, param, exp_dir / f"sweep_{safe}.png")
        rows = [[str(i), *(_fmt(v, 2) for v in labelled.loc[i])] for i in labelled.index]
        out += [f"## Evaluation sweep: {param}", ""]
        out += [
            f"Mean mIoU (%) over seeds; rows: trained head, columns: {param} at evaluation.",
            "",
        ]
        out += [md_table([f"head \\ {param}", *map(str, labelled.columns)], rows), ""]
        out += [f"![mIoU heat map over {param}]({png.name})", ""]

    out += ["## Accuracy against cost", ""]
    memory_label = f"training memory (MB; {', '.join(kind_set) or 'kind not recorded'})"
    for column, label, scale, file in (
        ("macs", "head GMACs per image", 1e9, "miou_vs_macs.png"),
        ("train_memory_mb", memory_label, 1.0, "miou_vs_memory.png"),
    ):
        caption = "\n".join(line.removeprefix("- ") for line in context)
        png = plots.plot_miou_against(summary, column, label, exp_dir / file, scale, caption)
        out += [f"![mIoU against {column}]({png.name})" if png else f"No {column} values.", ""]

    out += ["## Training curves", ""]
    if curves is None:
        out += ["No curves.csv.", ""]
    else:
        bad = set(zip(diverged["head"], diverged["seed"], strict=True))
        keep = [(h, s) not in bad for h, s in zip(curves["head"], curves["seed"], strict=True)]
        png = plots.plot_curves(curves[keep], exp_dir / "curves.png", list(summary["head"]))
        out += [f"![training curves]({png.name})" if png else "curves.csv has no loss or mIoU."]
        out += [""]

    out += ["## Attention maps", ""]
    note = (
        _render_maps(exp_dir, num_images, list(summary["head"]))
        if maps
        else "Attention maps not rebuilt (--no-maps)."
    )
    out += [note, ""]
    for k, figure in enumerate(image_figures(exp_dir), start=1):
        out += [f"![attention maps, image {k}]({figure.name})", ""]
    ema_maps = exp_dir / "attention_maps_ema.png"
    if ema_maps.is_file():
        out += [f"![EMA responsibilities]({ema_maps.name})", ""]

    report = exp_dir / "report.md"
    atomic_write_text(report, "\n".join(out))
    return report


def report_files(exp_dir: Path) -> list[Path]:
    """summary.md, report.md and every figure report.md shows, in its order."""
    report = exp_dir / "report.md"
    figures = re.findall(r"\]\(([^)\s]+\.png)\)", report.read_text()) if report.is_file() else []
    found = [exp_dir / "summary.md", report, *(exp_dir / name for name in figures)]
    return [path for path in dict.fromkeys(found) if path.is_file()]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp_dir", type=Path, help="results/<experiment> (holds runs.csv)")
    p.add_argument(
        "--no-maps",
        action="store_true",
        help="skip the attention-map figure (it loads every head's checkpoint)",
    )
    p.add_argument("--images", type=int, default=3, help="validation images in the map figure")


def command(args: argparse.Namespace) -> int:
    if args.images < 1:
        raise UserError(f"--images: expected a positive number, got {args.images}")
    report = build_report(args.exp_dir, maps=not args.no_maps, num_images=args.images)
    print(f"wrote {report} and {report.with_name('summary.md')}")
    return 0
