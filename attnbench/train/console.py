"""What `run` prints as it trains: a header line with an estimate, and a line per
finished run. (What it prints at the end is report/closing.py's.)

The estimate comes from the records already in the experiment's folder: each run's
metrics.json holds the wall time of the process that made it (`wall_time_s`; older
records only the training time, `train_time_s`, which leaves evaluation out). A run
without a record of its own is estimated from its head's other runs, then from any
run; with no record at all there is no estimate, and the experiment bar's ETA takes
over after the first iterations.
"""

from __future__ import annotations

import math
from typing import Any

from ..experiment.config import ExperimentConfig
from ..experiment.layout import DONE, experiment_dir
from ..experiment.plan import Run
from ..files import read_json
from ..progress import clock


def _recorded_seconds(planned: list[Run]) -> list[tuple[float, bool] | None]:
    """Per planned run, (seconds, whether they are wall time) from its record, or None."""
    found: list[tuple[float, bool] | None] = []
    for p in planned:
        record = read_json(p.folder.metrics)
        record = record if isinstance(record, dict) else {}
        value = None
        for key, wall in (("wall_time_s", True), ("train_time_s", False)):
            seconds = record.get(key)
            if isinstance(seconds, (int, float)) and math.isfinite(seconds) and seconds > 0:
                value = (float(seconds), wall)
                break
        found.append(value)
    return found


def estimate(planned: list[Run]) -> tuple[float, bool] | None:
    """(seconds for the runs still to train, whether all of it is wall time), or None."""
    records = _recorded_seconds(planned)
    known = [(p.head.name, r) for p, r in zip(planned, records, strict=True) if r is not None]
    if not known:
        return None
    total, wall = 0.0, True
    for p, own in zip(planned, records, strict=True):
        if p.status == DONE:
            continue
        if own is None:
            # Its head's other runs, else every recorded run.
            pool = [r for head, r in known if head == p.head.name] or [r for _, r in known]
            own = (sum(s for s, _ in pool) / len(pool), all(w for _, w in pool))
        total += own[0]
        wall = wall and own[1]
    return total, wall


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def header(cfg: ExperimentConfig, planned: list[Run]) -> str:
    """One line: how many runs, where they go, and how long they should take."""
    found = estimate(planned)
    exp_dir = experiment_dir(cfg)
    heads = list(dict.fromkeys(p.head.name for p in planned))
    seeds = {p.seed for p in planned}
    shape = (
        f"{_count(len(heads), 'head')} x {_count(len(seeds), 'seed')}"
        if len(heads) * len(seeds) == len(planned)
        else f"over {_count(len(heads), 'head')}"
    )
    todo = sum(p.status != DONE for p in planned)
    runs = _count(len(planned), "run")
    line = f"run {cfg.name}: {runs} ({shape}), {todo} to train -> {exp_dir}/; "
    if todo == 0:
        return line + "nothing to train"
    if found is None:
        return line + "no estimate (no earlier run recorded there): see the ETA below"
    seconds, wall = found
    if wall:
        return line + f"estimate {clock(seconds)} (from the times recorded there)"
    return line + (
        f"estimate {clock(seconds)} of training plus evaluation (only training times are "
        "recorded there)"
    )


def result_line(label: str, metrics: dict[str, Any]) -> str:
    """A finished run's figures (or why it diverged) on one line."""
    if metrics["status"] == "diverged":
        return f"{label}: diverged ({metrics['error']})"
    return (
        f"{label}: mIoU {metrics['mIoU']:.2f}  pixel acc {metrics['pixel_acc']:.2f}  "
        f"mean acc {metrics['mean_acc']:.2f}  ({metrics['iterations']} it, "
        f"{metrics['train_time_s']:.1f} s, {metrics['train_images_per_s'] or 0:.1f} img/s)"
    )
