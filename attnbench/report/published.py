"""Published figures (data/published.csv) beside the user's, in VOC, Cityscapes and ADE20K
reports.

published.csv holds, per data set, head (this suite's module name), backbone, crop and
schedule, the single-scale mIoU, training memory (GB) and inference fps that the source
gives, and the source of each row (repository path at a commit, or paper table). An empty
cell is a figure the source does not give. Nothing here is measured.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..data.published import load_published
from ..markdown import md_table

DATASETS = ("voc", "cityscapes", "ade20k")


def backbone_name(config: dict) -> str:
    backbone = config.get("model", {}).get("backbone", {})
    return f"R-{backbone.get('depth', 50)}-D{backbone.get('output_stride', 8)}"


def choose_row(rows: pd.DataFrame, backbone: str, iterations: float) -> pd.Series | None:
    """The row of the experiment's backbone (else any) with the schedule nearest to `iterations`."""
    if rows.empty:
        return None
    same = rows[rows["backbone"] == backbone]
    pool = same if not same.empty else rows
    distance = (pool["iterations"].fillna(math.inf) - iterations).abs()
    return pool.loc[distance.idxmin()]


def cost_of(rows: pd.DataFrame, row: pd.Series) -> tuple[float, float, bool]:
    """(Mem GB, fps, borrowed): from `row`, else from a row of the same model and crop."""
    if not (math.isnan(row["mem_gb"]) and math.isnan(row["fps"])):
        return row["mem_gb"], row["fps"], False
    twins = rows[(rows["backbone"] == row["backbone"]) & (rows["crop"] == row["crop"])]
    twins = twins.dropna(subset=["mem_gb"])
    if twins.empty:
        return math.nan, math.nan, False
    return twins.iloc[0]["mem_gb"], twins.iloc[0]["fps"], True


def _num(value: float, digits: int = 2) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _yours(summary_row: Any) -> str:
    if summary_row.n == 0 or math.isnan(summary_row.miou_mean):
        return "—"
    if summary_row.n == 1:
        return f"{summary_row.miou_mean:.2f} (1 seed)"
    return f"{summary_row.miou_mean:.2f} ± {summary_row.miou_ci:.2f} ({summary_row.n} seeds)"


def _setting(row: pd.Series) -> str:
    iterations = row["iterations"]
    schedule = "? it" if math.isnan(iterations) else f"{iterations / 1000:g}k it"
    return f"{row['method']}, {row['backbone']}, {row['crop'] or '?'}, {schedule}"


def _gap(head: Any, row: pd.Series, backbone: str) -> str:
    if row["backbone"] != backbone:
        return "n/a"  # only another backbone is published: no like-for-like gap
    if head.n == 0 or math.isnan(head.miou_mean):
        return "—"
    return f"{head.miou_mean - row['mIoU']:+.2f}"


def published_rows(
    summary: pd.DataFrame, config: dict, published: pd.DataFrame
) -> tuple[list[list[str]], list[str]]:
    """Table rows (one per head) and the numbered sources they cite."""
    dataset = config.get("data", {}).get("dataset")
    backbone = backbone_name(config)
    iterations = float(config.get("train", {}).get("iterations", 0))
    rows, sources = [], []
    for head in summary.itertuples():
        mine = published[(published["dataset"] == dataset) & (published["head"] == head.module)]
        row = choose_row(mine, backbone, iterations)
        if row is None:
            rows.append([head.head, head.module, _yours(head), "—", "—", "none published"])
            rows[-1] += ["—", "—", "—"]
            continue
        if row["source"] not in sources:
            sources.append(row["source"])
        mem, fps, borrowed = cost_of(mine, row)
        mark = " †" if borrowed else ""
        cells = [head.head, head.module, _yours(head), _num(row["mIoU"]), _gap(head, row, backbone)]
        cells += [_setting(row), _num(mem, 1) + mark, _num(fps) + mark]
        rows.append([*cells, f"[{sources.index(row['source']) + 1}]"])
    return rows, sources


def published_section(summary: pd.DataFrame, config: dict) -> list[str]:
    """Markdown lines of the "yours against published" section; [] for other data sets."""
    dataset = config.get("data", {}).get("dataset")
    if dataset not in DATASETS or summary.empty:
        return []
    rows, sources = published_rows(summary, config, load_published())
    header = ["head", "module", "yours mIoU", "published mIoU", "gap", "published setting"]
    header += ["published Mem (GB)", "published fps", "source"]
    iterations = config.get("train", {}).get("iterations", "?")
    out = ["## Yours against published", "", md_table(header, rows), ""]
    out += [
        f"- yours: this experiment, {backbone_name(config)}, {iterations} iterations, "
        "single-scale mIoU in % (mean ± half-width of the 95% interval over seeds).",
        "- published: single-scale mIoU of the same method on the same data set, for this "
        "backbone and the schedule nearest to yours; gap = yours − published, given only for "
        "the same backbone (n/a: only another backbone is published).",
        "- Mem and fps are the publisher's own figures (training memory per GPU, inference "
        "frames per second on their hardware), not comparable with this machine's. "
        "† : the publisher gives them on another schedule's row of the same model and crop.",
        "- The published heads are the publishers' own, not this suite's shared head; a gap "
        "measures the recipe and the head together.",
        "",
        "Sources:",
        "",
    ]
    out += [f"{i}. {source}" for i, source in enumerate(sources, 1)]
    return [*out, ""]
