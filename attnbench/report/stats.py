"""Seed-averaged summaries of an experiment's runs.csv: mean and Student-t interval per
head, the paired difference to the plain head, and the ranking with ties.

These suit scores that vary smoothly over seeds (VOC and the like). The probes' outcomes
are bimodal, and their capability table uses the distribution-free statistics of
report/solve.py instead.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

from .. import recorded
from ..errors import UserError
from .tables import CURVE_COLUMNS, RUN_COLUMNS, TEXT


@dataclass(frozen=True)
class Interval:
    """A sample mean with its spread: half_width is that of the two-sided t interval."""

    mean: float
    std: float  # sample standard deviation (n - 1); nan below 2 values
    half_width: float  # nan below 2 values
    n: int
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def mean_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """Mean, standard deviation and Student-t confidence half-width of `values`."""
    xs = [float(v) for v in values if not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, level)
    mean = sum(xs) / n
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, level)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1))
    half = float(scipy_stats.t.ppf(0.5 + level / 2.0, n - 1)) * std / math.sqrt(n)
    return Interval(mean, std, half, n, level)


def paired_difference(
    values: Mapping[int, float], baseline: Mapping[int, float], level: float = 0.95
) -> Interval:
    """Interval of values - baseline over the keys (seeds) both have."""
    common = sorted(set(values) & set(baseline))
    return mean_interval((values[k] - baseline[k] for k in common), level)


def rank_with_ties(intervals: Sequence[Interval]) -> list[tuple[int, list[int]]]:
    """(rank by mean, best = 1; indices of the others whose intervals overlap) per input.

    An interval of a single value (no half-width) is the point itself, so it ties only
    with intervals that contain it. Inputs without a mean get rank 0 and no ties.
    """
    order = sorted(
        (i for i, iv in enumerate(intervals) if not math.isnan(iv.mean)),
        key=lambda i: -intervals[i].mean,
    )
    result: list[tuple[int, list[int]]] = [(0, []) for _ in intervals]

    def bounds(iv: Interval) -> tuple[float, float]:
        half = 0.0 if math.isnan(iv.half_width) else iv.half_width
        return iv.mean - half, iv.mean + half

    for position, i in enumerate(order, start=1):
        low, high = bounds(intervals[i])
        ties = []
        for j in order:
            if j == i:
                continue
            other_low, other_high = bounds(intervals[j])
            if low <= other_high and other_low <= high:
                ties.append(j)
        result[i] = (position, ties)
    return result


# --- Tables of runs.csv (long format: experiment, head, module, seed, setting, metric,
# class_name, value) --------------------------------------------------------------------

COST_METRICS = recorded.names("cost")
# Per-run scalars averaged over seeds in the summary, beside mIoU.
SCALAR_METRICS = tuple(
    m.name
    for m in recorded.METRICS
    if m.group in ("score", "cost", "training") and m.aggregate == "mean" and m.name != "mIoU"
)


def _read_csv(path: Path, columns: tuple[str, ...], text: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise UserError(f"{path}: no such file; run the experiment first (python -m attnbench run)")
    try:
        # Empty settings and class names must stay "" rather than become NaN.
        df = pd.read_csv(path, dtype={c: str for c in text}, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise UserError(f"{path}: missing column(s) {', '.join(missing)}")
    df["seed"] = pd.to_numeric(df["seed"], errors="coerce").astype("Int64")
    return df


def load_runs(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """runs.csv: its numeric rows, and apart its text rows (memory_kind, cost_image_size)."""
    df = _read_csv(
        Path(path), RUN_COLUMNS, ("experiment", "head", "module", "setting", "metric", "class_name")
    )
    if df.empty:
        raise UserError(f"{path}: no rows")
    df["value"] = df["value"].astype(str)
    is_text = df["metric"].isin(TEXT)
    text, df = df[is_text], df[~is_text].copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df, text


def load_curves(path: Path) -> pd.DataFrame | None:
    """curves.csv, or None when the experiment has none."""
    if not Path(path).is_file():
        return None
    df = _read_csv(Path(path), CURVE_COLUMNS, ("experiment", "head", "metric"))
    df["iteration"] = pd.to_numeric(df["iteration"], errors="coerce")
    df["value"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def split_diverged(runs: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(All rows of runs that did not diverge, one row per diverged run).

    A diverged run (metric "diverged", value = the iteration) is listed, never averaged.
    """
    flagged = runs[runs["metric"] == "diverged"]
    diverged = (
        flagged.groupby(["head", "seed"], sort=False)
        .agg(module=("module", "first"), iteration=("value", "min"))
        .reset_index()
    )
    bad = set(zip(diverged["head"], diverged["seed"], strict=True))
    keep = [(h, s) not in bad for h, s in zip(runs["head"], runs["seed"], strict=True)]
    return runs[keep], diverged[["head", "module", "seed", "iteration"]]


def head_order(runs: pd.DataFrame) -> list[str]:
    """Heads in order of first appearance (the runner writes them in config order)."""
    return list(dict.fromkeys(runs["head"]))


def baseline_head(runs: pd.DataFrame) -> str | None:
    """The head whose module is "none"; among several, the one named "none", else the first."""
    heads = head_order(runs[runs["module"] == "none"])
    if not heads:
        return None
    return "none" if "none" in heads else heads[0]


def _per_seed(rows: pd.DataFrame, head: str, metric: str) -> dict[int, float]:
    chosen = rows[(rows["head"] == head) & (rows["metric"] == metric)]
    chosen = chosen[chosen["value"].notna()]
    return {int(k): float(v) for k, v in chosen.groupby("seed")["value"].mean().items()}


def summarise(runs: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """One row per head: mIoU interval over seeds, paired delta to the baseline, rank, costs.

    Diverged runs and eval-sweep rows (setting != "") are left out; a head all of whose
    runs diverged keeps a row with n = 0 and no rank.
    """
    kept, diverged = split_diverged(runs)
    main = kept[kept["setting"] == ""]
    costs = runs[runs["setting"] == ""]
    heads = head_order(runs)
    base = baseline_head(runs)
    base_miou = _per_seed(main, base, "mIoU") if base is not None else {}
    modules = runs.groupby("head", sort=False)["module"].first()
    records, intervals = [], []
    for head in heads:
        miou = _per_seed(main, head, "mIoU")
        iv = mean_interval(miou.values(), level)
        if base is None or head == base:
            delta = Interval(math.nan, math.nan, math.nan, 0, level)
        else:
            delta = paired_difference(miou, base_miou, level)
        record = {
            "head": head,
            "module": modules[head],
            "baseline": head == base,
            "seeds": tuple(sorted(miou)),
            "n": iv.n,
            "diverged": int((diverged["head"] == head).sum()),
            "miou_mean": iv.mean,
            "miou_std": iv.std,
            "miou_ci": iv.half_width,
            "delta_mean": delta.mean,
            "delta_std": delta.std,
            "delta_ci": delta.half_width,
            "delta_n": delta.n,
        }
        for metric in SCALAR_METRICS:
            # Costs belong to the head, not the run: a diverged run's count is as good.
            source = costs if metric in COST_METRICS else main
            values = _per_seed(source, head, metric)
            record[metric] = sum(values.values()) / len(values) if values else math.nan
        records.append(record)
        intervals.append(iv)
    ranks = rank_with_ties(intervals)
    for record, (rank, ties) in zip(records, ranks, strict=True):
        record["rank"] = rank
        record["tied_with"] = tuple(heads[j] for j in ties)
    columns = [*records[0].keys()] if records else ["head"]
    return pd.DataFrame.from_records(records, columns=columns)


def per_class_iou(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean IoU over seeds: rows = classes (first-seen order), columns = heads."""
    kept, _ = split_diverged(runs)
    rows = kept[(kept["setting"] == "") & (kept["metric"] == "iou")]
    if rows.empty:
        return pd.DataFrame()
    table = rows.pivot_table(index="class_name", columns="head", values="value", aggfunc="mean")
    classes = list(dict.fromkeys(rows["class_name"]))
    return table.reindex(index=classes, columns=[h for h in head_order(rows) if h in table])


def _sort_key(value: str) -> tuple[int, float, str]:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def sweep_tables(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per swept parameter, mean mIoU over seeds: rows = heads, columns = the swept values.

    A setting reads "param=value"; one without "=" counts as a value of "setting".
    """
    kept, _ = split_diverged(runs)
    # The knock-out evaluation is a diagnostic, not a swept parameter: the capability
    # table of a probe suite shows it.
    swept = (kept["setting"] != "") & (kept["setting"] != "knockout")
    rows = kept[swept & (kept["metric"] == "mIoU")].copy()
    if rows.empty:
        return {}
    parts = rows["setting"].str.partition("=")
    rows["param"] = [p if sep else "setting" for p, sep in zip(parts[0], parts[1], strict=True)]
    rows["swept"] = [v if sep else p for p, sep, v in parts.itertuples(index=False)]
    tables = {}
    for param, group in rows.groupby("param", sort=False):
        table = group.pivot_table(index="head", columns="swept", values="value", aggfunc="mean")
        columns = sorted(table.columns, key=_sort_key)
        tables[str(param)] = table.reindex(index=head_order(group), columns=columns)
    return tables
