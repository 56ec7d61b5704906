"""A user's run beside the committed record of the same name (report/reference.py)."""

from __future__ import annotations

import pandas as pd

from attnbench.report.reference import beside, write_beside_reference


def _capability(rows: list[tuple[str, str, float, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["probe", "head", "long_range_mean", "verdict"])


def test_beside_pairs_matching_rows_and_keeps_either_sides_extras() -> None:
    yours = _capability([("pairing", "none", 30.91, "(baseline)"), ("pairing", "isa", 70.0, "a")])
    ref = _capability([("pairing", "isa", 59.2, "b"), ("pairing", "pool", 56.2, "solves")])
    table = beside(yours, ref)
    assert table["head"].tolist() == ["none", "isa", "pool"]  # yours first, in your order
    assert table["long_range_mean"].tolist() == ["30.9 / –", "70 / 59.2", "– / 56.2"]
    assert table["verdict"].tolist() == ["(baseline) / –", "a / b", "– / solves"]


def test_a_text_that_agrees_is_written_once() -> None:
    same = _capability([("pairing", "none", 30.9, "(baseline)")])
    assert beside(same, same)["verdict"].tolist() == ["(baseline)"]
    assert beside(same, same)["long_range_mean"].tolist() == ["30.9 / 30.9"]


def test_reference_md_is_written_beside_the_record_only(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    columns = ["probe", "module", "can", "can_solved", "does", "does_solved", "step_ms", "gated"]
    for root, solved, ms in (("results", "7/8", 12.5), ("runs", "8/8", 11.0)):
        (tmp_path / root / "suite").mkdir(parents=True)
        row = ("pairing", "isa", "solves", solved, "solves", solved, ms, False)
        pd.DataFrame([row], columns=columns).to_csv(
            tmp_path / root / "suite" / "capability_modules.csv", index=False
        )
    path = write_beside_reference(tmp_path / "runs" / "suite")
    assert path == tmp_path / "runs" / "suite" / "reference.md"
    # The suite's headline, the module table, without the columns it does not show.
    assert "| pairing | isa | solves | 8/8 / 7/8 | solves | 8/8 / 7/8 | 11 / 12.5 |" in (
        path.read_text()
    )
    assert "gated" not in path.read_text()
    assert "[results/suite](../../results/suite/)" in path.read_text()
    # The record itself, or a run with no record of its name, gets no comparison.
    assert write_beside_reference(tmp_path / "results" / "suite") is None
    (tmp_path / "runs" / "other").mkdir()
    assert write_beside_reference(tmp_path / "runs" / "other") is None


def test_a_probe_folder_is_not_compared_with_the_suite_of_the_same_name(tmp_path, monkeypatch):
    """`report runs/connectivity/connectivity` (one probe of a suite) met the record's
    suite folder results/connectivity/, whose table shares no naming column with it."""
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "results" / "connectivity"
    suite.mkdir(parents=True)
    pd.DataFrame([("connectivity", "none", "never")], columns=["probe", "module", "can"]).to_csv(
        suite / "capability_modules.csv", index=False
    )
    probe = tmp_path / "runs" / "connectivity" / "connectivity"
    probe.mkdir(parents=True)
    columns = ["experiment", "head", "module", "seed", "setting", "metric", "class_name", "value"]
    row = ("connectivity/connectivity", "none", "none", 0, "", "mIoU", "", 40.0)
    pd.DataFrame([row], columns=columns).to_csv(probe / "runs.csv", index=False)
    assert write_beside_reference(probe) is None


def test_user_runs_default_to_the_git_ignored_runs_folder() -> None:
    from attnbench.cost.profile import PAPER_OUT, QUICK_OUT
    from attnbench.env import REPO_ROOT
    from attnbench.experiment.config import ExperimentConfig

    assert ExperimentConfig.__dataclass_fields__["output_dir"].default == "runs"
    assert PAPER_OUT.parts[0] == QUICK_OUT.parts[0] == "runs"
    assert "/runs/" in (REPO_ROOT / ".gitignore").read_text().splitlines()
