"""A user's results beside the committed record of the same name.

User runs go to runs/<name>/ (git-ignored); the reference record lives in
results/<name>/. When both exist, `run` and `report` write <name>/reference.md:
the user's summary table with each cell as "yours / reference", so that a reader sees
at once where their run agrees with the record and where it does not.

The summary table of a probe suite is its module table (capability_modules.csv); that of any other
experiment is the mean over seeds of each head's headline metrics in runs.csv.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from ..env import REPO_ROOT
from ..files import atomic_write_text
from ..markdown import md_table

RECORD = "results"
KEYS = ("probe", "head", "module", "gate", "setting")  # the columns that name a row, where present
# A suite's headline: per probe and module, can it and does it (report/capability_text.py).
SUITE_COLUMNS = ["probe", "module", "can", "can_solved", "does", "does_solved", "step_ms"]
HEADLINE = ("mIoU", "long_range_mIoU", "engagement", "gate_effect", "train_images_per_s")
FILE = "reference.md"


def reference_folder(exp_dir: Path) -> Path | None:
    """results/<name>/ of the record beside `exp_dir` (runs/<name>/), or None when there is
    none or `exp_dir` is the record itself."""
    exp_dir = Path(exp_dir)
    suite = _is_suite(exp_dir)
    for root in (Path(RECORD), REPO_ROOT / RECORD):
        candidate = root / exp_dir.name
        is_other = candidate.is_dir() and candidate.resolve() != exp_dir.resolve()
        # Like with like: a suite's probe folder (results/connectivity/connectivity/) shares
        # its name with the suite (results/connectivity/) but not its table.
        if is_other and _is_suite(candidate) == suite and summary_frame(candidate) is not None:
            return candidate
    return None


def _is_suite(exp_dir: Path) -> bool:
    return (exp_dir / "capability_modules.csv").is_file()


def summary_frame(exp_dir: Path) -> pd.DataFrame | None:
    """The summary table of `exp_dir` as a frame: capability.csv of a suite, else each
    head's mean over seeds of the headline metrics of runs.csv; None when neither exists."""
    capability = exp_dir / "capability_modules.csv"
    if capability.is_file():
        table = pd.read_csv(capability, keep_default_na=False, na_values=[""])
        return table[[c for c in SUITE_COLUMNS if c in table.columns]]
    runs_csv = exp_dir / "runs.csv"
    if not runs_csv.is_file():
        return None
    # Text columns stay text ("" where empty); only the values are numbers.
    runs = pd.read_csv(runs_csv, keep_default_na=False, dtype={"setting": str, "class_name": str})
    runs = runs[runs["metric"].isin(HEADLINE) & (runs["class_name"] == "")]
    runs = runs.assign(value=pd.to_numeric(runs["value"], errors="coerce"))
    table = runs.pivot_table(
        index=["head", "setting"], columns="metric", values="value", aggfunc="mean", sort=False
    )
    seeds = runs.groupby(["head", "setting"], sort=False)["seed"].nunique().rename("seeds")
    ordered = [m for m in HEADLINE if m in table.columns]
    return pd.concat([seeds, table[ordered]], axis=1).reset_index()


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def _pair(a: object, b: object) -> str:
    """ "a / b"; a text the same on both sides (a module's name, a verdict that agrees) once."""
    left, right = _cell(a), _cell(b)
    numeric = isinstance(a, float | int) or isinstance(b, float | int)
    return left if left == right and not numeric else f"{left} / {right}"


def beside(yours: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per row of either table, matched on the naming columns they share; each
    other shared column as "yours / reference" ("–" where one side has no value)."""
    keys = [k for k in KEYS if k in yours.columns and k in reference.columns]
    values = [c for c in yours.columns if c in reference.columns and c not in keys]
    yours = yours.fillna({k: "" for k in keys}).assign(_order=range(len(yours)))
    reference = reference.fillna({k: "" for k in keys}).assign(_ref=range(len(reference)))
    both = yours.merge(reference, on=keys, how="outer", suffixes=("", "@ref"))
    # Your rows in their order, then the record's rows your run does not have.
    both = both.sort_values(["_order", "_ref"], na_position="last").reset_index(drop=True)
    out = both[keys].astype(str)
    for column in values:
        pairs = zip(both[column], both[f"{column}@ref"], strict=True)
        out[column] = [_pair(a, b) for a, b in pairs]
    return out


def write_beside_reference(exp_dir: Path) -> Path | None:
    """<exp_dir>/reference.md beside the record of the same name; None when there is no
    record to compare with (or `exp_dir` is the record)."""
    exp_dir = Path(exp_dir)
    reference = reference_folder(exp_dir)
    yours = summary_frame(exp_dir)
    if reference is None or yours is None:
        return None
    table = beside(yours, summary_frame(reference))
    link = Path(os.path.relpath(reference.resolve(), exp_dir.resolve())).as_posix()
    name = f"{RECORD}/{reference.name}"
    lines = [
        f"# {exp_dir.name}: your run beside the reference record",
        "",
        f"Each cell: this run ({exp_dir}) / the committed record ([{name}]({link}/)). "
        "The record's own summary says on which device, commit and thread count it was "
        "made; a different machine or thread count gives different figures.",
        "",
        md_table(list(table.columns), table.values.tolist()),
        "",
    ]
    path = exp_dir / FILE
    atomic_write_text(path, "\n".join(lines))
    return path
