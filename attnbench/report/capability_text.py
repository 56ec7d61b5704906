"""The capability report of a probe suite: capability.csv (per head), capability_seeds.csv,
capability_modules.csv, summary.md (the module table first, then the head table and every
seed) and its figures."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..files import atomic_write_text
from ..markdown import md_table
from . import solve
from .capability import BASELINE, GATE_CLOSED, capability_tables, probe_chance, suite_probes
from .capability_plots import plot_engagement, plot_seeds

PAPER_COSTS = (
    "the modules' costs at the papers' sizes: `results/profile/` (MACs, parameters, memory, "
    "latency) and `results/cost/` (training memory and speed at the VOC recipe)"
)


def _num(value: float, digits: int = 1) -> str:
    return "–" if value != value else f"{value:.{digits}f}"


def _p(value: float) -> str:
    if value != value:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _si(value: float) -> str:
    if value != value:
        return "–"
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f}"


def module_lines(modules: pd.DataFrame) -> list[str]:
    """The headline: per probe and module, can it, does it, and what it costs."""
    rows = []
    for r in modules.itertuples(index=False):
        can = f"{r.can} ({r.can_solved})" if r.gated else f"{r.can} ({r.can_solved}; no gate)"
        does = f"{r.does} ({r.does_solved})" if r.gated else "the same run"
        if r.module == "none":
            can, does = "(baseline)", f"{r.does_solved} solved"
        rows.append(
            [
                r.probe,
                f"`{r.module}`",
                can,
                does,
                _si(r.macs_module),
                _si(r.params_module),
                _num(r.step_ms),
                _num(r.train_memory_mb),
            ]
        )
    header = [
        "probe",
        "module",
        "can it? (gate open)",
        "does it, under this recipe? (paper gate)",
        "module MACs",
        "module params",
        "train step (ms)",
        "train memory (MB)",
    ]
    return md_table(header, rows).splitlines()


def head_lines(heads: pd.DataFrame) -> list[str]:
    rows = []
    for r in heads.itertuples(index=False):
        base = r.head == BASELINE
        switched = f"{r.switched_on}/{r.switch_recorded}" if r.switch_recorded else "–"
        rows.append(
            [
                r.probe,
                r.head,
                r.gate,
                f"{r.solved}/{r.seeds}",
                f"[{r.solve_low:.2f}, {r.solve_high:.2f}]",
                "baseline" if base else _p(r.mann_whitney_p),
                "" if base else _p(r.fisher_p),
                "" if base else _num(r.p_improvement, 2),
                f"{_num(r.iqm)} [{_num(r.iqm_low)}, {_num(r.iqm_high)}]",
                _num(r.median_iterations_to_solve, 0),
                switched,
                _num(r.knockout),
                r.verdict,
            ]
        )
    header = [
        "probe",
        "head",
        "gate",
        "solved",
        "95% interval (exact)",
        "p, Mann-Whitney",
        "p, Fisher",
        "P(improvement)",
        "IQM long-range mIoU [95% bootstrap]",
        "iterations to solve (median)",
        "switched on",
        "knocked out (median)",
        "verdict",
    ]
    return md_table(header, rows).splitlines()


def seed_lines(seeds: pd.DataFrame) -> list[str]:
    """Every seed's long-range mIoU, solved ones in bold."""
    numbers = sorted(set(seeds["seed"]))
    rows = []
    for (probe, head), group in seeds.groupby(["probe", "head"], sort=False):
        by_seed = {
            int(s): (v, ok)
            for s, v, ok in zip(
                group["seed"], group["long_range_mIoU"], group["solved"], strict=True
            )
        }
        cells = [
            f"**{v:.1f}**" if ok else f"{v:.1f}"
            for v, ok in (by_seed.get(s, (float("nan"), False)) for s in numbers)
        ]
        rows.append([probe, head, *[c.replace("nan", "–") for c in cells]])
    return md_table(["probe", "head", *[f"seed {s}" for s in numbers]], rows).splitlines()


def notes(heads: pd.DataFrame) -> list[str]:
    thresholds = ", ".join(
        f"{p} {probe_chance(p):.1f} → {solve.solve_threshold(probe_chance(p)):.1f}"
        for p in dict.fromkeys(heads["probe"])
    )
    return [
        f"Long-range mIoU: the mean IoU (%) over the classes a network without context cannot "
        f"tell apart. A seed **solves** a probe when it reaches chance + "
        f"{solve.SOLVE_FRACTION} × (100 − chance), a threshold fixed from the chance level "
        f"before any run (chance → threshold: {thresholds}). Solved: k of n seeds, with the "
        f"exact (Clopper-Pearson) 95% interval. Against `none`: one-sided Mann-Whitney U on "
        f"the long-range mIoU, one-sided Fisher's exact test on the solved counts, and the "
        f"probability of improvement P(X > Y) + P(X = Y)/2 over pairs of seeds. IQM: the "
        f"interquartile mean with a percentile bootstrap interval (secondary: it averages the "
        f"two outcomes). Iterations to solve: the first evaluation at which a solved seed "
        f"reached the threshold. Switched on: the seeds whose gate effect (the engagement "
        f"for a module without gates) ended at {GATE_CLOSED} or more. Knocked out: the "
        f"long-range mIoU with the module replaced by the identity at evaluation.",
        "",
        "Verdicts: **solves** when the solve-rate interval lies wholly above that of `none`; "
        "**sometimes** when some seeds solve but the intervals overlap; **gate closed** when "
        "no seed solves and most seeds never switched the module on (the run cannot say "
        "whether it could have); **never** when no seed solves though the module switched "
        "on. *Can it?* reads the head with its gate open (a module's capability); *does "
        "it?* reads the head with its paper's zero-initialised gate, under this recipe (its "
        "trainability).",
    ]


def render_markdown(
    seeds: pd.DataFrame, heads: pd.DataFrame, modules: pd.DataFrame, context: list[str]
) -> str:
    lines = ["# Capability table", "", *[f"- {c}" for c in context], ""]
    lines += ["## What each module buys", "", *module_lines(modules), ""]
    lines += [f"Costs at the probe size, median over seeds; for {PAPER_COSTS}.", ""]
    for probe, group in heads.groupby("probe", sort=False):
        solved = group.loc[group["verdict"] == "solves", "head"].tolist()
        lines.append(
            f"- {probe}: solved by {', '.join(solved)}."
            if solved
            else f"- {probe}: no head solves it, so it measures nothing here."
        )
    lines += ["", "## Per head", "", *head_lines(heads), "", "## Per seed", ""]
    lines += [*seed_lines(seeds), "", *notes(heads), ""]
    return "\n".join(lines)


def build_capability_report(suite_dir: Path, context: list[str], caption: str = "") -> list[Path]:
    """capability.csv, capability_seeds.csv, capability_modules.csv, summary.md, seeds.png
    and engagement.png under suite_dir; `caption` (the run context) goes under each figure."""
    suite_dir = Path(suite_dir)
    seeds, heads, modules = capability_tables(suite_dir)
    csvs = {
        "capability.csv": heads,
        "capability_seeds.csv": seeds,
        "capability_modules.csv": modules,
    }
    written = []
    for name, frame in csvs.items():
        atomic_write_text(suite_dir / name, frame.to_csv(index=False, float_format="%.4f"))
        written.append(suite_dir / name)
    text = render_markdown(seeds, heads, modules, context)
    figures = [
        plot_seeds(seeds, suite_dir / "seeds.png", caption),
        plot_engagement(suite_dir, suite_probes(suite_dir), suite_dir / "engagement.png", caption),
    ]
    for figure in figures:
        if figure is not None:
            text += f"\n![{figure.stem}]({figure.name})\n"
            written.append(figure)
    atomic_write_text(suite_dir / "summary.md", text)
    return [*written, suite_dir / "summary.md"]
