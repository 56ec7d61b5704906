"""Which runs train together as a seed batch (`train.seed_batch: S`), and one such batch
from set-up to metrics.json.

A seed batch is up to S runs of one head that start at the same iteration (all new,
or all resumed from checkpoints of the same iteration), in plan order. Batching is off
(every run alone) when S is 0 or 1 and under torchrun, where each run is already
spread over processes. Each run of a batch is set up, scored and recorded exactly as
run.run_one does; only the training in between is shared (batched_loop.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..distributed import DistInfo
from ..experiment.layout import RESUME
from ..experiment.plan import Run
from .batched_loop import train_seed_batch
from .loop import Diverged
from .run import finish_run, record_divergence, start_run


def start_iteration(run: Run) -> int:
    """The iteration the run starts from: its checkpoint's when it resumes, else 0."""
    if run.status != RESUME:
        return 0
    saved = torch.load(run.checkpoint_path, map_location="cpu", weights_only=False)
    return int(saved["iteration"])


def seed_batches(runs: Sequence[Run], size: int, dist: DistInfo) -> list[list[Run]]:
    """The runs in groups that train together (a group of one trains alone), in plan order:
    each group holds up to `size` runs of one head and one start iteration."""
    if size <= 1 or dist.enabled:
        return [[run] for run in runs]
    groups: dict[tuple[str, int], list[list[Run]]] = {}
    order: list[list[Run]] = []
    for run in runs:
        chunks = groups.setdefault((run.head.name, start_iteration(run)), [])
        if not chunks or len(chunks[-1]) == size:
            chunks.append([])
            order.append(chunks[-1])
        chunks[-1].append(run)
    return order


def run_seed_batch(
    runs: list[Run], train_set: Any, val_set: Any, class_names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Train the runs as one seed batch, then score and record each; their metrics."""
    num_classes = len(class_names)
    started = [start_run(run, train_set, num_classes) for run in runs]
    models = [s.model for s in started]
    outcomes, rng = train_seed_batch(runs, models, train_set, val_set, num_classes)
    recorded = []
    for k, (run, start, outcome) in enumerate(zip(runs, started, outcomes, strict=True)):
        start.base["seed_batch"] = len(runs)
        with rng.of(k):
            if isinstance(outcome, Diverged):
                recorded.append(record_divergence(run, start, outcome))
            else:
                recorded.append(finish_run(run, start, outcome, val_set, class_names))
    return recorded
