"""The capability table of a probe suite: probe x head, counted seed by seed.

A suite (an experiment with `probes:`) keeps one experiment per probe under
<out>/<suite>/<probe>/, each with its own runs.csv and curves.csv. From those alone this
builds three tables (report/capability_text.py writes them out):

    seeds       one row per (probe, head, seed): long-range mIoU, solved or not, the
                score with the module knocked out, the gate effect, iterations to solve
    heads       one row per (probe, head): the solve rate with its exact interval, the
                tests against `none` (report/solve.py), the IQM, and the verdict
    modules     one row per (probe, module): "can it?" from its open-gate head, "does
                it, under this recipe?" from its paper-gate head, and its costs

Verdicts of a head:

    solves       its solve-rate interval lies wholly above that of `none`
    sometimes    some seeds solve, but the interval overlaps that of `none`
    gate closed  no seed solves, and in most seeds the gate effect (the engagement for
                 a module without gates) stayed below GATE_CLOSED: the module never
                 switched its context on, so the run cannot say whether it could have
    never        no seed solves, though the module is switched on
    (baseline)   `none` itself
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import modules

from ..data.probes import REGISTRY, local_chance_iou
from ..errors import UserError
from . import solve
from .stats import load_curves, load_runs

GATE_CLOSED = 0.05  # below this, the module (or its gated path) hardly changes its input
BASELINE = "none"
NAN = float("nan")


def probe_chance(probe: str) -> float:
    """The long-range mIoU (%) a network without context can expect on this probe: its
    registry entry's (data/probes/); a probe the registry does not know, two balanced
    classes' (base.local_chance_iou)."""
    return 100 * (REGISTRY[probe].chance if probe in REGISTRY else local_chance_iou())


def suite_probes(suite_dir: Path) -> list[str]:
    """The probes of a suite folder, its sub-folders that hold a runs.csv: in the
    registry's order, then any it does not know, by name."""
    found = {p.parent.name for p in Path(suite_dir).glob("*/runs.csv")}
    return [p for p in REGISTRY if p in found] + sorted(found - set(REGISTRY))


def _values(runs: pd.DataFrame, metric: str, setting: str = "") -> dict[tuple[str, int], float]:
    rows = runs[(runs["metric"] == metric) & (runs["setting"] == setting)]
    return {
        (h, int(s)): float(v)
        for h, s, v in zip(rows["head"], rows["seed"], rows["value"], strict=True)
    }


def seed_rows(probe: str, runs: pd.DataFrame, curves: pd.DataFrame | None) -> list[dict]:
    """One row per (head, seed) of one probe's runs."""
    threshold = solve.solve_threshold(probe_chance(probe))
    score = _values(runs, "long_range_mIoU")
    knocked = _values(runs, "long_range_mIoU", "knockout")
    gate_effect, engagement = _values(runs, "gate_effect"), _values(runs, "engagement")
    gate_open = _values(runs, "gate_open")
    modules = runs.groupby("head", sort=False)["module"].first()
    rows = []
    for (head, seed), value in score.items():
        switched = gate_effect.get((head, seed), engagement.get((head, seed), NAN))
        rows.append({
            "probe": probe, "head": head, "module": modules[head], "seed": seed,
            "gate": "open" if gate_open.get((head, seed)) else "paper",
            "long_range_mIoU": value, "solved": bool(value >= threshold),
            "knockout": knocked.get((head, seed), NAN),
            "gate_effect": gate_effect.get((head, seed), NAN),
            "engagement": engagement.get((head, seed), NAN),
            "switched_on": bool(switched >= GATE_CLOSED) if switched == switched else None,
            "iterations_to_solve": _to_solve(curves, head, seed, threshold),
        })  # fmt: skip
    return rows


def _to_solve(curves: pd.DataFrame | None, head: str, seed: int, threshold: float) -> float:
    if curves is None:
        return NAN
    rows = curves[
        (curves["head"] == head)
        & (curves["seed"] == seed)
        & (curves["metric"] == "long_range_mIoU")
    ]
    return solve.iterations_to_solve(
        list(zip(rows["iteration"], rows["value"], strict=True)), threshold
    )


def head_rows(seeds: pd.DataFrame, costs: pd.DataFrame) -> list[dict]:
    """One row per (probe, head) from the seed rows: rates, tests, IQM, verdict, costs."""
    rows = []
    for probe, group in seeds.groupby("probe", sort=False):
        threshold = solve.solve_threshold(probe_chance(str(probe)))
        base = group.loc[group["head"] == BASELINE, "long_range_mIoU"].tolist()
        base_rate = solve.solve_rate(base, threshold)
        for head, mine in group.groupby("head", sort=False):
            scores = mine["long_range_mIoU"].tolist()
            rate = solve.solve_rate(scores, threshold)
            against = solve.compare(scores, base, threshold) if head != BASELINE else None
            iqm, low, high = solve.iqm_interval(scores)
            switched = [s for s in mine["switched_on"] if s is not None]
            row = {
                "probe": probe, "head": head, "module": mine["module"].iloc[0],
                "gate": mine["gate"].iloc[0], "seeds": rate.n, "solved": rate.solved,
                "solve_rate": rate.rate, "solve_low": rate.low, "solve_high": rate.high,
                "mann_whitney_p": against.mann_whitney_p if against else NAN,
                "fisher_p": against.fisher_p if against else NAN,
                "p_improvement": against.p_improvement if against else NAN,
                "iqm": iqm, "iqm_low": low, "iqm_high": high,
                "median_iterations_to_solve": solve.median(mine["iterations_to_solve"].tolist()),
                "switched_on": sum(switched), "switch_recorded": len(switched),
                "gate_effect": solve.median(mine["gate_effect"].tolist()),
                "engagement": solve.median(mine["engagement"].tolist()),
                "knockout": solve.median(mine["knockout"].tolist()),
                "threshold": threshold,
            }  # fmt: skip
            row["verdict"] = verdict(str(head), rate, base_rate, row)
            rows.append({**row, **_costs(costs, str(probe), str(head))})
    return rows


def verdict(head: str, rate: solve.SolveRate, base: solve.SolveRate, row: dict) -> str:
    if head == BASELINE:
        return "(baseline)"
    if rate.above(base):
        return "solves"
    if rate.solved > 0:
        return "sometimes"
    recorded, on = row["switch_recorded"], row["switched_on"]
    if recorded and on * 2 < recorded:
        return "gate closed"
    return "never"


COST_COLUMNS = {  # capability column: (runs.csv metric, scale)
    "macs_module": ("macs_module", 1.0),
    "params_module": ("params_module", 1.0),
    "step_ms": ("train_time_s", 1000.0),  # divided by the iterations below
    "train_memory_mb": ("train_memory_mb", 1.0),
}


def _costs(costs: pd.DataFrame, probe: str, head: str) -> dict[str, float]:
    mine = costs[(costs["probe"] == probe) & (costs["head"] == head) & (costs["setting"] == "")]

    def median_of(metric: str) -> float:
        return solve.median(mine.loc[mine["metric"] == metric, "value"].tolist())

    found = {column: median_of(metric) * scale for column, (metric, scale) in COST_COLUMNS.items()}
    found["step_ms"] /= median_of("iterations")
    return found


def module_rows(heads: pd.DataFrame) -> list[dict]:
    """Per (probe, module): can it (open gate, or the module's only head), does it under
    this recipe (paper gate), and the costs of its paper-gate head. A gated module whose
    suite ran one gate only says "not run" for the other: nobody measured it."""
    rows = []
    for (probe, module), group in heads.groupby(["probe", "module"], sort=False):
        paper = group[group["gate"] == "paper"]
        opened = group[group["gate"] == "open"]
        gated = bool(len(opened)) or has_gate(module)
        does = paper.iloc[0] if len(paper) else None
        can = opened.iloc[0] if len(opened) else (None if gated else does)
        costs = does if does is not None else can
        can_head, can_verdict, can_solved = _said(can, "paper")
        does_head, does_verdict, does_solved = _said(does, "open")
        rows.append({
            "probe": probe, "module": module, "can_head": can_head, "does_head": does_head,
            "can": can_verdict, "can_solved": can_solved,
            "does": does_verdict, "does_solved": does_solved,
            "gated": gated, **{c: costs[c] for c in COST_COLUMNS},
        })  # fmt: skip
    return rows


def _said(head: pd.Series | None, other: str) -> tuple[str, str, str]:
    """(head name, verdict, k/n) of one gate's head, or, for a gate not run, what says so
    (`other`: the gate that did run)."""
    if head is None:
        return "", "not run", f"only the {other} gate ran"
    return head["head"], head["verdict"], f"{head['solved']}/{head['seeds']}"


def has_gate(module: str) -> bool:
    """Whether the module has zero-initialised gates (built at its defaults)."""
    return module in modules.available() and bool(modules.build(module, 64).gates())


def capability_tables(suite_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(seeds, heads, modules) of a suite folder."""
    probes = suite_probes(suite_dir)
    if not probes:
        raise UserError(f"{suite_dir}: no <probe>/runs.csv below it; run the probe suite first")
    seeds, costs = [], []
    for probe in probes:
        runs, _ = load_runs(Path(suite_dir) / probe / "runs.csv")
        seeds += seed_rows(probe, runs, load_curves(Path(suite_dir) / probe / "curves.csv"))
        costs.append(runs.assign(probe=probe))
    seed_table = pd.DataFrame(seeds)
    heads = pd.DataFrame(head_rows(seed_table, pd.concat(costs)))
    return seed_table, heads, pd.DataFrame(module_rows(heads))
