"""The numbers a report shows, read and summarised once: runs.csv and curves.csv, with
the context the report prints beside them (each run's env.json, the experiment's
config.yaml). The figures (drawing.py) and the text (sections.py) are built from this
record alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import modules

from .context import context_lines, cost_context, read_environment, read_experiment_config
from .stats import load_curves, load_runs, per_class_iou, split_diverged, summarise, sweep_tables

LEVEL = 0.95


@dataclass(frozen=True)
class Results:
    """What summary.md, report.md and the figures are built from."""

    exp_dir: Path
    runs: pd.DataFrame
    curves: pd.DataFrame | None  # every run's curves; kept_curves leaves the diverged out
    summary: pd.DataFrame
    baseline: str | None
    kinds: dict[str, str]  # head -> memory kind
    context: list[str]  # the lines under the title: device, seeds, data, resolution
    config: dict  # the experiment's config.yaml, as a plain dict
    diverged: pd.DataFrame
    per_class: pd.DataFrame  # rows = classes, columns = heads
    sweeps: dict[str, pd.DataFrame]  # swept parameter -> rows = labelled heads, columns = values
    kept_curves: pd.DataFrame | None

    @property
    def kind_set(self) -> list[str]:
        return list(dict.fromkeys(self.kinds.values()))

    @property
    def caption(self) -> str:
        """The context lines (device, torch, threads, seeds, code) as a figure's caption."""
        return "\n".join(line.removeprefix("- ") for line in self.context)

    @property
    def heads(self) -> list[str]:
        return list(self.summary["head"])


def read_results(exp_dir: Path) -> Results:
    """runs.csv and curves.csv, summarised, with the context the report shows beside them."""
    runs, text = load_runs(exp_dir / "runs.csv")
    config = read_experiment_config(exp_dir)
    kinds, sizes = cost_context(text)
    summary = summarise(runs, LEVEL)
    curves = load_curves(exp_dir / "curves.csv")
    _, diverged = split_diverged(runs)
    return Results(
        exp_dir=exp_dir,
        runs=runs,
        curves=curves,
        summary=summary,
        baseline=next((r.head for r in summary.itertuples() if r.baseline), None),
        kinds=kinds,
        context=context_lines(runs, read_environment(exp_dir), config, sizes),
        config=config,
        diverged=diverged,
        per_class=per_class_iou(runs),
        sweeps={
            param: table.set_axis(_sweep_row_labels(table, param, config), axis=0)
            for param, table in sweep_tables(runs).items()
        },
        kept_curves=None if curves is None else _without_diverged(curves, diverged),
    )


def _without_diverged(curves: pd.DataFrame, diverged: pd.DataFrame) -> pd.DataFrame:
    bad = set(zip(diverged["head"], diverged["seed"], strict=True))
    keep = [(h, s) not in bad for h, s in zip(curves["head"], curves["seed"], strict=True)]
    return curves[keep]


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
