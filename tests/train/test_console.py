"""What `run` prints: the header with an estimate, the experiment's progress, the closing
summary table with every file written, and an interrupt message on a line of its own."""

from __future__ import annotations

import io
import os
import stat
import sys
from pathlib import Path

import pytest

# test_command.py sits beside this file (pytest puts the folder on sys.path): its tiny YAML.
from test_command import write_yaml

from attnbench import progress
from attnbench.cli import main
from attnbench.experiment.config import load_config
from attnbench.experiment.plan import plan_runs
from attnbench.train import console

HEADS = "  - {name: base, module: none}\n  - {name: nl, module: nonlocal, params: {reduction: 2}}"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_yaml(tmp_path, heads=HEADS, iterations=2)


@pytest.mark.slow
def test_a_tiny_run_prints_header_progress_table_and_files(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tiny.parent / "results" / "tiny"
    old = os.umask(0o022)
    try:
        assert main(["run", str(tiny)]) == 0
    finally:
        os.umask(old)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"run tiny: 2 runs (2 heads x 1 seed), 2 to train -> {exp}/; "
        "no estimate (no earlier run recorded there): see the ETA below"
    )
    # Without a terminal the experiment's progress is a line after each run.
    assert any(line.startswith("experiment: runs 1/2, elapsed ") for line in out)
    assert any(line.startswith("experiment: runs 2/2, elapsed ") for line in out)
    closing = out[out.index(f"summary ({exp / 'summary.md'}):") :]
    table = [line for line in closing if line.startswith("| ")]
    assert table[0].startswith("| head | module | seeds | mIoU mean |")
    assert [row.split(" | ")[0] for row in table[1:]] == ["| base", "| nl"]
    listed = closing[closing.index("files written:") + 1 :]
    for name in ("runs.csv", "summary.md", "report.md", "miou_vs_macs.png", "curves.png"):
        assert f"  {exp / name}" in listed, name
    assert f"  {exp / 'attention_maps_1.png'}" in listed  # checkpoints are there: maps drawn
    assert listed[-1].startswith(f"  and per run, {exp}/runs/<head>/seed<k>/")
    # Result files get the umask's mode (0644 here), not mkstemp's private 0600.
    files = ["summary.md", "report.md", "runs.csv", "config.yaml", "runs/nl/seed0/env.json"]
    for name in files:
        assert stat.S_IMODE((exp / name).stat().st_mode) == 0o644, name


def test_the_estimate_comes_from_the_recorded_runs(tiny: Path) -> None:
    cfg = load_config(tiny)
    planned = plan_runs(cfg, None)
    assert console.estimate(planned) is None
    base, nl = (p.run_dir for p in planned)
    base.mkdir(parents=True)
    (base / "metrics.json").write_text('{"status": "finished", "wall_time_s": 30.0}')
    # nl has no record: it is estimated from base's, the only record there is.
    assert console.estimate(planned) == (60.0, True)
    nl.mkdir(parents=True)
    (nl / "metrics.json").write_text('{"status": "finished", "train_time_s": 90.0}')
    assert console.estimate(planned) == (120.0, False)  # part of it training time only
    line = console.header(cfg, plan_runs(cfg, None))
    assert line.endswith(
        "estimate 2:00 of training plus evaluation (only training times are recorded there)"
    )


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("experiment", [True, False])
def test_interrupt_message_starts_on_its_own_line(
    experiment: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    import attnbench.cli as cli

    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)

    def interrupted(_args) -> int:
        outer = progress.experiment(runs=2, done_runs=0, iterations=20, show=True)
        with outer if experiment else contextlib.nullcontext():
            bar = progress.Progress("base seed0", total=10, start=0, show=True)
            for done in range(1, 4):
                bar.update(done, lr=0.01)
            raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load", lambda name: (lambda p: None, interrupted))
    assert main(["run"]) == 130
    text = terminal.getvalue()
    before, message, _ = text.partition("attnbench run: interrupted; finished work is kept")
    assert message, text
    assert "base seed0" in before  # the bar was shown
    assert ("experiment: runs 0/2" in before) == experiment
    assert before.endswith("\n"), repr(before[-80:])


def test_clock() -> None:
    assert progress.clock(5) == "0:05"
    assert progress.clock(754) == "12:34"
    assert progress.clock(3723) == "1:02:03"
    assert progress.clock(float("nan")) == "?"
