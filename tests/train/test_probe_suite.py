"""The probe suite end to end: one command trains every probe and writes the capability table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attnbench import cli, recorded

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
    # Two heads per probe in each of the module, head and seed tables.
    assert summary.count("| pairing |") == 6 and summary.count("| retrieval |") == 6
    # The recipe a reader needs to compare two suites is in the context lines.
    assert (
        "2 iterations of batch 4 at lr 0.1; 64 px images; ResNet-18 of width 8, stem + 0 stages;"
        in summary
    )
    assert "head 32 channels" in summary
    assert (suite / "capability.csv").is_file() and (suite / "seeds.png").is_file()
    # Every figure a run records is declared in the one list of metrics.
    for metrics in suite.glob("*/runs/*/seed*/metrics.json"):
        assert recorded.undeclared(json.loads(metrics.read_text())) == [], metrics
    # Run again: every run is done, nothing is trained, the table is rebuilt the same.
    before = summary
    assert cli.main([*args, "--output-dir", str(tmp_path)]) == 0
    assert (suite / "summary.md").read_text() == before


@pytest.mark.slow
def test_a_suite_stopped_in_its_second_probe_keeps_the_first_ones_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from attnbench import distributed
    from attnbench.train import session

    tiny = [
        "--set", "train.iterations=2", "--set", "train.checkpoint_interval=2",
        "--set", "data.train_size=8", "--set", "train.batch_size=4",
        "--set", "data.val_size=4", "--set", "seeds=[0]", "--set", "train.device=cpu",
        "--set", "data.image_size=64", "--set", "probes=[pairing,retrieval]",
    ]  # fmt: skip
    args = ["run", str(REPO / "experiments" / "probes.yaml"), *tiny, "--heads", "none,pool"]
    real_run, calls, joins = session.run_one, [], []

    def stopped_at_the_fourth(*a, **kw):  # pairing: none, pool; retrieval: none, then this
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real_run(*a, **kw)

    monkeypatch.setattr(session, "run_one", stopped_at_the_fourth)
    monkeypatch.setattr(distributed, "init", lambda *a: joins.append(a))
    assert cli.main([*args, "--output-dir", str(tmp_path)]) == 130
    suite = tmp_path / "probes"
    assert (suite / "pairing" / "report.md").is_file()  # closed before the second probe
    assert (suite / "pairing" / "summary.md").is_file()
    runs = (suite / "retrieval" / "runs.csv").read_text()  # its finished run is kept
    assert "none" in runs and ",pool," not in runs
    assert not (suite / "retrieval" / "report.md").exists()
    assert not (suite / "summary.md").exists()  # the capability report comes last
    assert len(joins) == 1  # one process group for both probes
    # The same command resumes: only retrieval's pool trains, then every report is written.
    monkeypatch.setattr(session, "run_one", real_run)
    assert cli.main([*args, "--output-dir", str(tmp_path)]) == 0
    assert len(calls) == 4
    assert (suite / "retrieval" / "report.md").is_file() and (suite / "summary.md").is_file()
