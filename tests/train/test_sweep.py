"""`run --executor local`: the runs go through submitit's local executor, as jobs of the
same command line a --jobs child runs, and land in the same run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# test_command.py sits beside this file (pytest puts the folder on sys.path): its tiny YAML.
from test_command import write_yaml

from attnbench.cli import main
from attnbench.report import closing


def test_a_sweep_runs_through_submitits_local_executor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(closing, "build_report_safely", lambda exp: None)
    path = write_yaml(tmp_path, heads="  - {name: base, module: none}", iterations=2)
    path.write_text(path.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    assert main(["run", str(path), "--jobs", "2", "--executor", "local"]) == 0
    exp = tmp_path / "results" / "tiny"
    for seed in (0, 1):
        metrics = json.loads((exp / f"runs/base/seed{seed}/metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["seed"] == seed
    assert list((exp / "submitit").glob("*_log.out"))  # the engine's own job logs
    assert (exp / "runs.csv").is_file()
