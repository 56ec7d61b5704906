"""Every figure a run records, declared once: its name, group, how it combines over seeds,
its column heading, and whether it is also logged as a curve.

`run` writes these keys into each run's metrics.json (train/run.py), the tables turn
them into runs.csv and curves.csv (report/tables.py), and the summaries and the
capability report aggregate them (report/stats.py, report/capability.py): all read
this list. A test checks that every key of a metrics.json is declared here.

Groups:
    record      who the run is and how it ran (not a figure; never averaged)
    score       evaluation scores, in % (also recorded per evaluation setting)
    per_class   per-class scores (a dict of class -> %)
    diagnostic  what the trained module does (engagement, gate effect, receptive field)
    cost        the head's size and arithmetic
    training    time, throughput and memory of training
    text        context written as text (what a cost figure means)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Group = Literal["record", "score", "per_class", "diagnostic", "cost", "training", "text"]
Aggregate = Literal["mean", "first", "none"]


@dataclass(frozen=True)
class Metric:
    name: str
    group: Group
    aggregate: Aggregate  # over seeds: the mean, the first value, or never combined
    column: str  # its heading in tables
    curve: bool = False  # also logged at every evaluation (curves.csv)


def _m(name: str, group: Group, column: str, aggregate: Aggregate = "mean", curve: bool = False):
    return Metric(name, group, aggregate, column, curve)


METRICS: tuple[Metric, ...] = (
    # record
    _m("experiment", "record", "experiment", "none"),
    _m("head", "record", "head", "none"),
    _m("module", "record", "module", "none"),
    _m("gate", "record", "gate", "first"),
    _m("module_params", "record", "module keywords", "none"),
    _m("seed", "record", "seed", "none"),
    _m("world_size", "record", "processes", "first"),
    _m("sync_bn", "record", "SyncBatchNorm", "first"),
    _m("device", "record", "device", "first"),
    _m("status", "record", "status", "none"),
    _m("diverged_at", "record", "diverged at iteration", "none"),
    _m("error", "record", "error", "none"),
    _m("eval", "record", "evaluation protocol", "none"),
    _m("curve", "record", "evaluations during training", "none"),
    _m("sweep", "record", "evaluation sweep", "none"),
    _m("weights_sha256_by_rank", "record", "weights hash", "none"),
    _m("feature_size", "record", "feature size", "first"),
    # scores (%)
    _m("mIoU", "score", "mIoU", curve=True),
    _m("pixel_acc", "score", "pixel accuracy"),
    _m("mean_acc", "score", "mean accuracy"),
    _m("long_range_mIoU", "score", "long-range mIoU", curve=True),
    _m("iou", "per_class", "IoU"),
    _m("acc", "per_class", "accuracy"),
    # diagnostics (probes)
    _m("engagement", "diagnostic", "engagement", curve=True),
    _m("gate_effect", "diagnostic", "gate effect", curve=True),
    _m("receptive_field_px", "diagnostic", "receptive field (px)"),
    _m("effective_receptive_field_px", "diagnostic", "effective receptive field (px)"),
    # costs
    _m("params", "cost", "parameters"),
    _m("params_module", "cost", "module parameters"),
    _m("macs", "cost", "MACs"),
    _m("macs_module", "cost", "module MACs"),
    # training
    _m("iterations", "training", "iterations"),
    _m("train_time_s", "training", "training time (s)"),
    _m("wall_time_s", "training", "wall time (s)"),
    _m("train_images_per_s", "training", "img/s"),
    _m("train_images_per_s_q1", "training", "img/s, first quartile"),
    _m("train_images_per_s_q3", "training", "img/s, third quartile"),
    _m("train_images_per_s_low", "training", "img/s, lowest window"),
    _m("train_images_per_s_high", "training", "img/s, highest window"),
    _m("throughput_spread", "training", "throughput spread"),
    _m("throughput_windows", "training", "throughput windows"),
    _m("contended", "training", "contended"),  # 0/1: the mean is the contended fraction
    _m("threads", "training", "threads"),
    _m("train_memory_mb", "training", "training memory (MB)"),
    _m("train_memory_warmup_mb", "training", "warm-up memory (MB)"),
    # text
    _m("memory_kind", "text", "memory kind", "first"),
    _m("cost_image_size", "text", "cost image size", "first"),
)

BY_NAME: dict[str, Metric] = {m.name: m for m in METRICS}


def names(*groups: Group, curve: bool | None = None) -> tuple[str, ...]:
    """The declared names of these groups (all groups when none is given), in order;
    `curve` keeps only those that are (True) or are not (False) logged as curves."""
    return tuple(
        m.name
        for m in METRICS
        if (not groups or m.group in groups) and (curve is None or m.curve == curve)
    )


def undeclared(keys: object) -> list[str]:
    """The keys that no declared metric names (for the test over metrics.json files)."""
    return sorted(str(k) for k in keys if k not in BY_NAME)  # type: ignore[union-attr]
