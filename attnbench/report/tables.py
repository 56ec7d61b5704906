"""runs.csv and curves.csv of an experiment, rebuilt from every run's metrics.json and log.

Long format: one value per row, so the report can pivot as it likes.
The tables are rebuilt from scratch each time, from every (head, seed) of the config
that has a metrics.json, so a killed experiment's finished runs are always listed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from .. import recorded
from ..experiment.config import ExperimentConfig
from ..experiment.layout import experiment_dir, run_folder
from ..files import atomic_write_text, read_json, read_log

RUN_COLUMNS = ("experiment", "head", "module", "seed", "setting", "metric", "class_name", "value")
CURVE_COLUMNS = ("experiment", "head", "seed", "iteration", "metric", "value")

# What each table holds, read from the one list of recorded metrics.
SCORES = recorded.names("score")
CURVES = recorded.names(curve=True)
TEXT = recorded.names("text")  # rows whose value is text, not a number
DIAGNOSTICS = recorded.names("diagnostic")
COSTS = recorded.names("cost")
TRAINING = recorded.names("training")


def run_rows(metrics: dict[str, Any]) -> Iterator[list[Any]]:
    """The runs.csv rows of one metrics.json."""
    base = [metrics["experiment"], metrics["head"], metrics["module"], metrics["seed"]]

    def row(setting: str, metric: str, value: Any, class_name: str = "") -> list[Any]:
        return [*base, setting, metric, class_name, _cell(value)]

    yield from _cost_context(row, metrics)
    yield row("", "gate_open", int(metrics.get("gate") == "open"))
    if metrics.get("status") == "diverged":
        yield row("", "diverged", metrics["diverged_at"])
        for key in COSTS:
            yield row("", key, metrics.get(key))
        return
    for setting, scores in [("", metrics), *((s["setting"], s) for s in metrics.get("sweep", []))]:
        for key in SCORES:
            if key in scores:  # long_range_mIoU: only data sets that declare such classes
                yield row(setting, key, scores[key])
        for name, value in scores["iou"].items():
            yield row(setting, "iou", value, name)
        if setting == "":
            for key in (*TRAINING, *COSTS):
                yield row("", key, metrics.get(key))
            for key in DIAGNOSTICS:  # recorded where they apply (the field: probes only)
                if key in metrics:
                    yield row("", key, metrics[key])


def _cost_context(row: Any, metrics: dict[str, Any]) -> Iterator[list[Any]]:
    """What the cost figures mean: the memory kind, and the image size MACs are counted at."""
    if metrics.get("memory_kind"):
        yield row("", "memory_kind", metrics["memory_kind"])
    size = metrics.get("cost_image_size")
    if isinstance(size, list) and len(size) == 2:
        yield row("", "cost_image_size", f"{size[0]}x{size[1]}")


def curve_rows(
    experiment: str, head: str, seed: int, log: Iterable[dict[str, Any]]
) -> Iterator[list[Any]]:
    """loss and lr of every logged training interval; mIoU (and, where recorded, the
    long-range mIoU, the module's engagement and its gate effect) of every evaluation."""
    for record in log:
        event, it = record.get("event"), record.get("iteration")
        if event == "train":
            yield [experiment, head, seed, it, "loss", _cell(record.get("loss"))]
            yield [experiment, head, seed, it, "lr", _cell(record.get("lr"))]
        elif event in ("eval", "final"):
            for key in CURVES:
                if key in record:
                    yield [experiment, head, seed, it, key, _cell(record[key])]


def write_tables(cfg: ExperimentConfig) -> tuple[Path, Path, int]:
    """Write runs.csv and curves.csv under <output_dir>/<exp>: both paths and the run count."""
    runs, curves, count = [], [], 0
    for spec in cfg.heads:
        for seed in cfg.seeds_of(spec):
            folder = run_folder(cfg, spec.name, seed)
            metrics = read_json(folder.metrics)
            if not isinstance(metrics, dict) or "status" not in metrics:
                continue
            count += 1
            runs.extend(run_rows(metrics))
            curves.extend(curve_rows(cfg.name, spec.name, seed, read_log(folder.log)))
    exp_dir = experiment_dir(cfg)
    runs_path, curves_path = exp_dir / "runs.csv", exp_dir / "curves.csv"
    atomic_write_text(runs_path, _csv(RUN_COLUMNS, runs))
    atomic_write_text(curves_path, _csv(CURVE_COLUMNS, curves))
    return runs_path, curves_path, count


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return value


def _csv(header: tuple[str, ...], rows: list[list[Any]]) -> str:
    # object columns: every cell written as Python writes it (floats at full precision)
    frame = pd.DataFrame(rows, columns=list(header), dtype=object)
    return frame.to_csv(index=False, lineterminator="\n")
