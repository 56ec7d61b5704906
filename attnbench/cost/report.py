"""Tables, growth exponents and plots of `python -m attnbench profile`.

Growth exponents: a straight line fitted to log(value) against log(N), N = H * W,
over every measured size ("fit"), and the slope between the two largest measured
sizes ("top", closest to the large-N behaviour). The formula's exponents come from
the module's own macs(h, w) at the same sizes, and in the limit from
macs(2048, 2048) against macs(1024, 1024).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..markdown import md_table

FIT_METRICS: dict[str, str] = {
    "macs": "MACs (fvcore)",
    "mem_infer_mb": "inference peak memory",
    "mem_saved_mb": "saved for backward",
    "mem_train_mb": "training peak memory",
    "lat_infer_ms": "inference latency",
}
MACS_HEADER = (
    "MACs = multiply-accumulates (FLOPs = 2 x MACs), one inference forward, batch as "
    "listed; counted by fvcore with the handles of attnbench.measure.flops (convs and "
    "matrix products exactly; softmax 3, elementwise 1, reductions 1 per element)."
)


def _slope(n: np.ndarray, y: np.ndarray) -> float:
    keep = y > 0
    if keep.sum() < 2:
        return float("nan")
    return float(np.polyfit(np.log(n[keep]), np.log(y[keep]), 1)[0])


def _top_slope(n: np.ndarray, y: np.ndarray) -> float:
    keep = y > 0
    return _slope(n[keep][-2:], y[keep][-2:])


def fit_exponents(sweep: pd.DataFrame, limits: dict[str, float]) -> pd.DataFrame:
    """One row per (module, metric): measured exponents next to the formula's."""
    sweep = sweep.assign(n=sweep["height"] * sweep["width"])
    out: list[dict[str, Any]] = []
    for module, part in sweep.groupby("module", sort=False):
        wide = part.pivot_table(index="n", columns="metric", values="value").sort_index()
        n = wide.index.to_numpy(dtype=float)
        formula = wide.get("macs_formula", pd.Series(np.nan, index=wide.index)).to_numpy(float)
        for metric, label in FIT_METRICS.items():
            if metric not in wide:
                continue
            y = wide[metric].to_numpy(dtype=float)
            out.append(
                {
                    "module": module,
                    "metric": metric,
                    "what": label,
                    "sizes": len(n),
                    "n_min": int(n.min()),
                    "n_max": int(n.max()),
                    "exponent_fit": _slope(n, y),
                    "exponent_top": _top_slope(n, y),
                    "formula_fit": _slope(n, formula),
                    "formula_top": _top_slope(n, formula),
                    "formula_limit": limits.get(str(module), float("nan")),
                }
            )
    return pd.DataFrame(out)


def formula_limit(macs: Any) -> float:
    """Exponent of a macs(h, w) formula at large N (2048^2 against 1024^2)."""
    small, large = macs(1024, 1024), macs(2048, 2048)
    if small <= 0 or large <= 0:
        return float("nan")
    return math.log(large / small) / math.log(4)


# -- Markdown ----------------------------------------------------------------------


def _num(value: float, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _giga(value: float) -> str:
    """A count in G: two decimals from 1 G up, three significant digits below (a quick
    profile's tiny sizes and `pool`'s C^2 would read 0.00 otherwise)."""
    if value is None or math.isnan(value) or value == 0 or abs(value) >= 1:
        return _num(value)
    return f"{value:.3g}" if abs(value) >= 1e-4 else f"{value:.2e}"


def _spread(r: pd.Series, name: str) -> str:
    return f"{_num(r.get(name + '_ms', np.nan))} ± {_num(r.get(name + '_iqr_ms', np.nan))}"


def env_lines(paper: pd.DataFrame) -> list[str]:
    first = paper.iloc[0]
    lines = [
        f"- Device: {first['device']} ({first['device_name']}); dtype {first['dtype']}; "
        f"torch {first['torch']}; {first['threads']} thread(s).",
    ]
    if first["device"] == "cuda":
        import torch

        lines.append(
            f"- CUDA numerics: matmul TF32 {torch.backends.cuda.matmul.allow_tf32}, cuDNN TF32 "
            f"{torch.backends.cudnn.allow_tf32}, cudnn.benchmark {torch.backends.cudnn.benchmark}."
        )
    return lines


def peak_rate(paper: pd.DataFrame) -> tuple[float, float, str]:
    """(matmul reference, peak, which measurement the peak is).

    The peak is the larger of the reference and the fastest MACs per second any case
    reached, so no case can be above 100% of it.
    """
    device = paper[paper["scope"] == "device"]
    reference = float(device["value"].iloc[0]) if len(device) else 0.0
    rates = paper[paper["metric"].isin(["macs_per_s_infer", "macs_per_s_train"])]
    if rates.empty or rates["value"].max() <= reference:
        return reference, reference, "the dense matmul reference; no case was faster"
    best = rates.loc[rates["value"].idxmax()]
    kind = str(best["metric"]).removeprefix("macs_per_s_")
    where = f"{best['scope']} {best['module']} at {int(best['height'])}x{int(best['width'])}"
    return reference, float(best["value"]), f"the fastest measured case, {where}, {kind}"


def _peak_line(paper: pd.DataFrame) -> str:
    reference, peak, which = peak_rate(paper)
    device = paper[paper["scope"] == "device"]
    size = int(device["height"].iloc[0]) if len(device) else 0
    numerics = str(device["method"].iloc[0]).split("; ", 1)[-1] if len(device) else ""
    return (
        f"- Peak for '% of peak': {peak / 1e9:,.1f} GMACs/s, {which}. It is the larger of "
        f"the dense matmul reference ({size}^3, {numerics}: {reference / 1e9:,.1f} GMACs/s "
        "in this run) and the fastest rate any case reached: convolutions can beat a square "
        "matmul (on CPU, and under TF32), so the reference alone is no ceiling and no "
        "figure exceeds 100%. '% of peak' = MACs per second at the median latency over the "
        "peak (training: the forward + backward MACs of torch.utils.flop_counter)."
    )


def paper_markdown(
    paper: pd.DataFrame, memory_kinds: dict[str, str], unsupported: dict[str, dict[str, int]]
) -> str:
    """The paper-settings table, one row per (scope, module, setting, size)."""
    key = ["scope", "module", "setting", "channels", "height", "width"]
    wide = paper[paper["scope"] != "device"].pivot_table(
        index=key, columns="metric", values="value", sort=False
    )
    _, peak, _ = peak_rate(paper)
    lines = [
        "# Cost at the paper settings",
        "",
        f"{MACS_HEADER}",
        "",
        *env_lines(paper),
        _peak_line(paper),
        "- Memory: " + "; ".join(f"**{k}**: {v}" for k, v in memory_kinds.items()) + ".",
        "- Scopes: 'module' = the context module alone, C -> C; 'head' = "
        "attnbench.model.head.SegHead around it (3x3 reduce in -> C, module, 3x3 project, "
        "concat with the input and 3x3 fuse, dropout, 1x1 classifier; no upsampling, which "
        "is the model's job), in_channels -> classes. Input = channels x height x width, "
        "batch 1.",
        "- Latency: median ± IQR (torch.utils.benchmark, synchronised on CUDA); training "
        "step = forward + backward of the output's mean in train mode, no optimiser step.",
        "- Unsupported ops met by the MAC counter: "
        + (
            "none."
            if not any(unsupported.values())
            else "; ".join(f"{k}: {dict(v)}" for k, v in unsupported.items() if v)
        ),
        "",
    ]
    header = [
        "scope",
        "module",
        "setting",
        "input",
        "GMACs",
        "flop_counter GMACs",
        "formula GMACs (module)",
        "params (M)",
        "infer mem (MB)",
        "train mem (MB)",
        "saved for bwd (MB)",
        "infer ms",
        "train ms",
        "infer % of peak",
        "train % of peak",
    ]
    rows = [_paper_row(index, r, peak) for index, r in wide.iterrows()]
    return "\n".join([*lines, md_table(header, rows), ""])


def _paper_row(index: tuple, r: pd.Series, peak: float) -> list[str]:
    """One (scope, module, setting, channels, height, width) of the paper-settings table."""
    scope, module, setting, channels, h, w = index
    formula = r.get("macs_formula", r.get("macs_module_formula", float("nan")))
    return [
        scope,
        module,
        setting or "default",
        f"{int(channels)}x{int(h)}x{int(w)}",
        _giga(r.get("macs", np.nan) / 1e9),
        _giga(r.get("macs_flop_counter", np.nan) / 1e9),
        _giga(formula / 1e9),
        _num(r.get("params", np.nan) / 1e6, 3),
        _num(r.get("mem_infer_mb", np.nan), 1),
        _num(r.get("mem_train_mb", np.nan), 1),
        _num(r.get("mem_saved_mb", np.nan), 1),
        _spread(r, "lat_infer"),
        _spread(r, "lat_train"),
        _num(100 * r.get("macs_per_s_infer", np.nan) / peak, 1),
        _num(100 * r.get("macs_per_s_train", np.nan) / peak, 1),
    ]


def fit_markdown(fits: pd.DataFrame, sweep: pd.DataFrame, notes: list[str]) -> str:
    """The growth-exponent table of the resolution sweep."""
    lines = [
        "# How cost grows with resolution",
        "",
        "Exponent p in cost ~ N^p, N = H x W, module alone (C -> C), batch 1. "
        "'fit': least squares over every measured size; 'top': the two largest "
        "measured sizes. 'formula' columns: the module's macs(h, w) at the same sizes, "
        "and its limit at large N (2048^2 against 1024^2).",
        "",
        MACS_HEADER,
        "",
        *env_lines(sweep),
        *[f"- {note}" for note in notes],
        "",
    ]
    header = ["module", "metric", "N range", "fit", "top", "formula fit", "formula top", "limit"]
    rows = [
        [
            r["module"],
            r["what"],
            f"{r['n_min']}–{r['n_max']} ({r['sizes']} sizes)",
            *(_num(r[c]) for c in ("exponent_fit", "exponent_top", "formula_fit")),
            *(_num(r[c]) for c in ("formula_top", "formula_limit")),
        ]
        for _, r in fits.iterrows()
    ]
    return "\n".join([*lines, md_table(header, rows), ""])


# -- plots -------------------------------------------------------------------------


# The identity's latency is the cost of one Python call (microseconds), orders of
# magnitude under every real module's: on a shared log axis it squashes them together.
OFF_SCALE = ("none",)


def _context(sweep: pd.DataFrame) -> str:
    first = sweep.iloc[0]
    return (
        f"{first['device']} ({first['device_name']}), {first['dtype']}, torch {first['torch']}, "
        f"{first['threads']} thread(s); module alone, batch 1, C = {first['channels']}"
    )


def _latency_note(latency: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The latency rows to draw, and a caption naming what was left out and its values."""
    left_out = latency[latency["module"].isin(OFF_SCALE)]
    if left_out.empty:
        return latency, ""
    parts = []
    for module, rows in left_out.groupby("module", sort=False):
        low, high = rows["value"].min(), rows["value"].max()
        parts.append(f"{module} (identity): {low:.3g}–{high:.3g} ms at every size")
    note = (
        "Not drawn, to keep the y-axis on the modules: "
        + "; ".join(parts)
        + " (the cost of a Python call)."
    )
    return latency[~latency["module"].isin(OFF_SCALE)], note


def plot_sweep(sweep: pd.DataFrame, out_dir: Path, suffix: str) -> list[Path]:
    """Log-log cost against N per module: MACs (with the formula dashed), memory, latency."""
    import seaborn as sns

    from ..figures import save_figure

    sns.set_theme(style="whitegrid", context="paper")
    data = sweep.assign(N=sweep["height"] * sweep["width"])
    data = data[data["value"] > 0]
    context = _context(sweep)
    # One colour per module in all three figures, whichever modules a figure leaves out.
    order = list(dict.fromkeys(sweep["module"]))
    palette = dict(zip(order, sns.color_palette(n_colors=len(order)), strict=True))
    written = []

    def draw(frame: pd.DataFrame, name: str, ylabel: str, note: str = "", **kw: Any) -> None:
        if frame.empty:
            return
        shown = [m for m in order if m in set(frame["module"])]
        grid = sns.relplot(
            data=frame, x="N", y="value", hue="module", hue_order=shown, palette=palette,
            kind="line", marker="o",
            height=3.6, aspect=1.3, facet_kws={"sharey": False}, **kw,
        )  # fmt: skip
        grid.set(xscale="log", yscale="log")
        grid.set_titles("{col_name}")
        grid.set_axis_labels("N = H x W (positions)", ylabel)
        caption = context + (f"\n{note}" if note else "")
        grid.figure.text(0.01, -0.01, caption, fontsize=7.5, va="top")
        written.append(save_figure(grid.figure, out_dir / f"{name}{suffix}.png"))

    macs = data[data["metric"].isin(["macs", "macs_formula"])].replace(
        {"metric": {"macs": "fvcore count", "macs_formula": "docstring formula"}}
    )
    draw(macs, "sweep_macs", "MACs (multiply-accumulates)", style="metric")
    memory = data[data["metric"].isin(["mem_infer_mb", "mem_saved_mb", "mem_train_mb"])]
    memory = memory.replace({"metric": {k: FIT_METRICS[k] for k in FIT_METRICS}})
    draw(memory, "sweep_memory", "MB", col="metric")
    latency, note = _latency_note(data[data["metric"] == "lat_infer_ms"])
    draw(latency, "sweep_latency", "inference latency (ms, median)", note)
    return written


__all__ = [
    "fit_exponents",
    "fit_markdown",
    "formula_limit",
    "paper_markdown",
    "peak_rate",
    "plot_sweep",
]
