"""The probe suite end to end: one command trains every probe and writes the capability table."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench import cli

REPO = Path(__file__).parents[2]


@pytest.mark.slow
def test_probe_suite_runs_every_probe_and_writes_the_capability_report(tmp_path: Path) -> None:
    tiny = [
        "--set", "train.iterations=2", "--set", "train.eval_interval=1",
        "--set", "train.checkpoint_interval=2", "--set", "data.train_size=8",
        "--set", "train.batch_size=4",
        "--set", "data.val_size=4", "--set", "seeds=[0]", "--set", "train.device=cpu",
        "--set", "data.image_size=64", "--set", "probes=[pairing,retrieval]",
    ]  # fmt: skip
    args = ["run", str(REPO / "experiments" / "probes.yaml"), *tiny, "--heads", "none,isa"]
    assert cli.main([*args, "--output-dir", str(tmp_path)]) == 0
    suite = tmp_path / "probes"
    for probe in ("pairing", "retrieval"):
        runs = (suite / probe / "runs.csv").read_text()
        assert "long_range_mIoU" in runs and "knockout" in runs and "engagement" in runs
        assert "receptive_field_px" in runs
    summary = (suite / "summary.md").read_text()
    assert summary.startswith("# Capability table")
    assert summary.count("| pairing |") == 2 and summary.count("| retrieval |") == 2
    assert (suite / "capability.csv").is_file() and (suite / "knockout.png").is_file()
    # Run again: every run is done, nothing is trained, the table is rebuilt the same.
    before = summary
    assert cli.main([*args, "--output-dir", str(tmp_path)]) == 0
    assert (suite / "summary.md").read_text() == before
