"""Where a run's files live: results/<experiment>/runs/<head>/seed<k>/."""

from __future__ import annotations

from pathlib import Path

from .config import ExperimentConfig


def run_dir(cfg: ExperimentConfig, head: str, seed: int) -> Path:
    return Path(cfg.output_dir) / cfg.name / "runs" / head / f"seed{seed}"
