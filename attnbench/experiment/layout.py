"""Where an experiment's files live, and what a run folder says about its run.

    <output_dir>/<experiment>/      config.yaml runs.csv curves.csv summary.md report.md *.png
      runs/<head>/seed<k>/          config.yaml env.json log.jsonl metrics.json
        checkpoints/last.pt         (git-ignored)

Every path under runs/ is built here, and only here. A run's metrics.json is
written last: its "status" ("finished" or "diverged") marks the run as recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..files import read_json
from .config import ExperimentConfig

NEW, RESUME, DONE = "new", "resume", "done"


@dataclass(frozen=True)
class RunFolder:
    """The folder of one (head, seed) run and the files in it."""

    head: str
    seed: int
    path: Path

    # The files of a run, written in this order; metrics.json marks it as recorded.
    config = property(lambda self: self.path / "config.yaml")
    env = property(lambda self: self.path / "env.json")
    log = property(lambda self: self.path / "log.jsonl")
    checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    metrics = property(lambda self: self.path / "metrics.json")

    def recorded(self) -> str | None:
        """The status its metrics.json records ("finished", "diverged"), else None."""
        metrics = read_json(self.metrics)
        return metrics.get("status") if isinstance(metrics, dict) else None

    def has_weights(self) -> bool:
        """A finished run whose final checkpoint is here (checkpoints are not committed)."""
        return self.recorded() == "finished" and self.checkpoint.is_file()

    def status(self) -> str:
        """DONE, RESUME or NEW: what running the experiment again does with this run.

        A finished run without its checkpoint is the committed record of a fresh clone:
        it is trained again, which on CPU reproduces the same figures.
        """
        recorded, has_checkpoint = self.recorded(), self.checkpoint.is_file()
        if recorded == "diverged" or (recorded == "finished" and has_checkpoint):
            return DONE
        if has_checkpoint and recorded is None:
            return RESUME
        return NEW


def experiment_dir(cfg: ExperimentConfig) -> Path:
    """<output_dir>/<experiment>: runs/<experiment> by default (git-ignored)."""
    return Path(cfg.output_dir) / cfg.name


def run_folder(cfg: ExperimentConfig, head: str, seed: int) -> RunFolder:
    return RunFolder(head, seed, experiment_dir(cfg) / "runs" / head / f"seed{seed}")


def run_folders(exp_dir: Path) -> list[RunFolder]:
    """Every run folder found under exp_dir/runs, by head name, then by seed."""
    found = []
    for head_dir in sorted((Path(exp_dir) / "runs").glob("*")):
        seeds = {int(p.name[4:]): p for p in head_dir.glob("seed*") if p.name[4:].isdigit()}
        found += [RunFolder(head_dir.name, seed, seeds[seed]) for seed in sorted(seeds)]
    return found
