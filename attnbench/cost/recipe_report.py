"""The Markdown table of `python -m attnbench cost`: ours beside mmsegmentation's, as ratios."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from ..markdown import md_table
from .published import published_ratios
from .report import _num

CAVEAT = (
    "mmsegmentation trained in float32 on other GPUs with 4 (VOC) or 2 (Cityscapes) images "
    "per GPU, and timed inference on whole test images at batch 1: its absolute Mem and fps "
    "do not compare with ours. Its ratios to the FCN row of the same setting do, beside "
    "ours to `none` (the shared head without a module, the FCN baseline)."
)


def recipe_markdown(frame: pd.DataFrame, recipe: str) -> str:
    """One table per backbone; every ratio is to the `none` head of the same backbone."""
    first = frame.iloc[0]
    lines = [
        f"# Cost of every head at the `{recipe}` recipe",
        "",
        f"- Device: {first['device']} ({first['device_name']}); {first['dtype']}; "
        f"torch {first['torch']}; {first['threads']} thread(s); crop {first['crop']}, "
        f"batch {first['batch']}; generated images and labels, random weights.",
        f"- Training memory: {_method(frame, 'train_mem_gb')}, over steady steps; 'warm-up' "
        "is the peak of the first steps, cudnn.benchmark's trial workspaces included.",
        "- Rates: median (first-third quartile) over timed windows after a warm-up window; "
        "'!' marks a figure whose IQR exceeded 25% of its median (contended). Training "
        "steps are full SGD steps with the auxiliary loss; inference is eval mode, no "
        "gradient, at the training batch and at batch 1.",
        f"- {CAVEAT}",
        "",
    ]
    for backbone, part in frame.groupby("backbone", sort=False):
        wide = part.pivot_table(index="head", columns="metric", values="value", sort=False)
        modules = part.drop_duplicates("head").set_index("head")["module"]
        depth = int(part["depth"].iloc[0])
        lines += [f"## {backbone}", "", _backbone_table(wide, modules, depth), ""]
    return "\n".join(lines)


def _method(frame: pd.DataFrame, metric: str) -> str:
    rows = frame[frame["metric"] == metric]
    return str(rows["method"].iloc[0]) if len(rows) else "not measured"


HEADER = [
    "head",
    "train mem GB",
    "x none",
    "warm-up GB",
    "train img/s",
    "x none",
    "infer img/s",
    "fps, batch 1",
    "x none",
    "mmseg Mem GB",
    "x FCN",
    "mmseg fps",
    "x FCN",
    "mmseg row",
]


def _backbone_table(wide: pd.DataFrame, modules: pd.Series, depth: int) -> str:
    base = wide.loc["none"] if "none" in wide.index else None
    rows = []
    for head, r in wide.iterrows():
        published = published_ratios(str(modules[head]), depth)
        mmseg: list[str] = ["–"] * 5
        if published is not None:
            row, mem_ratio, fps_ratio = published
            mmseg = [_num(row.mem_gb, 2), _num(mem_ratio), _num(row.fps, 2), _num(fps_ratio),
                     f"{row.method}, {row.setting}; {row.cite}"]  # fmt: skip
        rows.append(
            [
                str(head),
                _num(r["train_mem_gb"], 3),
                _ratio(r, base, "train_mem_gb"),
                _num(r["train_mem_warmup_gb"], 3),
                _rate(r, "train"),
                _ratio(r, base, "train_img_s"),
                _rate(r, "infer"),
                _rate(r, "infer_b1"),
                _ratio(r, base, "infer_b1_img_s"),
                *mmseg,
            ]
        )
    return md_table(HEADER, rows)


def _rate(r: pd.Series, kind: str) -> str:
    flag = " !" if r.get(f"{kind}_contended", 0) else ""
    q1, q3 = r.get(f"{kind}_img_s_q1", math.nan), r.get(f"{kind}_img_s_q3", math.nan)
    return f"{_num(r[f'{kind}_img_s'], 1)} ({_num(q1, 1)}–{_num(q3, 1)}){flag}"


def _ratio(r: pd.Series, base: Any, metric: str) -> str:
    if base is None or not base[metric] > 0:
        return "–"
    return _num(r[metric] / base[metric])


__all__ = ["CAVEAT", "recipe_markdown"]
