"""`run --jobs N`: the deal of runs to child processes, their threads, what the parent
prints and writes, a failing child, and stopping children on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# test_command.py sits beside this file (pytest puts the folder on sys.path): its tiny YAML.
from test_command import TIMING, read_csv, write_yaml

from attnbench import env, files, progress
from attnbench.cli import main
from attnbench.experiment.config import load_config
from attnbench.experiment.layout import NEW
from attnbench.experiment.plan import plan_runs
from attnbench.train import jobs

HEADS = "  - {name: base, module: none}\n  - {name: nl, module: nonlocal, params: {reduction: 2}}"


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """2 heads x 2 seeds of 2 iterations."""
    path = write_yaml(tmp_path, heads=HEADS, iterations=2)
    path.write_text(path.read_text().replace("seeds: [0]", "seeds: [0, 1]"))
    return path


def test_runs_not_done_are_dealt_round_robin_and_no_job_is_empty() -> None:
    assert jobs.deal([0, 1, 2, 3, 4, 5, 6], 3) == [[0, 3, 6], [1, 4], [2, 5]]
    assert jobs.deal([2, 5], 4) == [[2], [5]]  # fewer runs than jobs: one job per run
    assert jobs.deal([], 2) == []


def test_threads_share_the_usable_cores_unless_the_config_pins_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(env, "usable_cores", lambda: 16)
    assert jobs.threads_per_job(4, pinned=0) == 4
    assert jobs.threads_per_job(10, pinned=0) == 1
    assert jobs.threads_per_job(32, pinned=0) == 1
    assert jobs.threads_per_job(4, pinned=2) == 2
    child = jobs.child_environment(4)
    assert child["OMP_NUM_THREADS"] == child["MKL_NUM_THREADS"] == "4"


@pytest.mark.parametrize(
    ("jobs_arg", "world", "message"),
    [("0", None, "--jobs 0: expected a whole number of processes, 1 or more"),
     ("2", "2", "--jobs 2: not under torchrun (2 processes already train each run together)")],
)  # fmt: skip
def test_jobs_that_cannot_work_are_refused_in_one_line(
    tiny: Path,
    jobs_arg: str,
    world: str | None,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if world:
        for key, value in (("WORLD_SIZE", world), ("RANK", "0"), ("LOCAL_RANK", "0")):
            monkeypatch.setenv(key, value)
    assert main(["run", str(tiny), "--jobs", jobs_arg]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"attnbench run: error: {message}") and err.count("\n") == 1
    assert not (tiny.parent / "results").exists()


def test_dry_run_says_how_the_runs_would_be_split(
    tiny: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(env, "usable_cores", lambda: 16)
    assert main(["run", str(tiny), "--jobs", "3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "--jobs 3: 4 run(s) to train in 3 processes of 5 thread(s) each" in out
    assert "  job 1 (2 runs): base seed0, nl seed1\n  job 2 (1 run): base seed1\n" in out
    assert not (tiny.parent / "results").exists()


AUTO = jobs.auto_jobs  # the real rule: conftest makes every other test train in one process


@pytest.mark.parametrize(
    ("cores", "extra", "split"),
    [(2, [], "--jobs 2: 4 run(s) to train in 2 processes of 1 thread(s) each"),
     (16, [], "--jobs 4: 4 run(s) to train in 4 processes of 4 thread(s) each"),
     (16, ["--set", "train.threads=8"], "--jobs 2: 4 run(s) to train in 2 processes of 8"),
     (1, [], None),
     (16, ["--heads", "base", "--set", "seeds=[0]"], None)],
)  # fmt: skip
def test_jobs_auto_is_the_default_and_uses_every_core_of_a_cpu(
    tiny: Path,
    cores: int,
    extra: list[str],
    split: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(jobs, "auto_jobs", AUTO)
    monkeypatch.setattr(env, "usable_cores", lambda: cores)
    assert main(["run", str(tiny), "--dry-run", *extra]) == 0
    out = capsys.readouterr().out
    if split is None:  # one core, or one run: trained in this process
        assert "--jobs" not in out
    else:
        assert split in out


@pytest.mark.slow
def test_two_jobs_give_the_rows_of_one_with_split_threads(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = max(1, env.usable_cores() // 2)  # each of the 2 children's share
    one, two = tiny.parent / "one", tiny.parent / "two"
    sequential = ["--set", f"train.threads={threads}", "--output-dir", str(one), "--no-report"]
    assert main(["run", str(tiny), *sequential]) == 0
    capsys.readouterr()
    assert main(["run", str(tiny), "--jobs", "2", "--output-dir", str(two)]) == 0
    out = capsys.readouterr().out
    assert out.count("experiment: runs ") == 4 and "experiment: runs 4/4, elapsed" in out
    for label in ("base seed0", "base seed1", "nl seed0", "nl seed1"):
        assert f"\n{label}: mIoU " in out
    assert (two / "tiny" / "summary.md").is_file()  # the report, as the sequential path does
    assert {p.name for p in (two / "tiny" / "jobs").iterdir()} == {"job1.log", "job2.log"}

    def rows(folder: Path) -> list[dict[str, str]]:
        return [r for r in read_csv(folder / "tiny" / "runs.csv") if r["metric"] not in TIMING]

    assert len(rows(two)) > 50 and rows(two) == rows(one)
    for run_dir in (two / "tiny" / "runs").glob("*/seed*"):
        recorded = json.loads((run_dir / "env.json").read_text())
        assert recorded["threads"] == threads and recorded["omp_num_threads"] == str(threads)


@pytest.mark.slow
def test_a_failing_job_is_named_with_its_log_and_the_others_finish(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exp = tiny.parent / "results" / "tiny"
    # A file where job 2's first run (base seed1) needs its folder: that child fails.
    (exp / "runs" / "base").mkdir(parents=True)
    (exp / "runs" / "base" / "seed1").write_text("in the way")
    assert main(["run", str(tiny), "--jobs", "2", "--no-report"]) == 1
    captured = capsys.readouterr()
    log = exp / "jobs" / "job2.log"
    last = log.read_text().splitlines()[-1]  # the child's error: the folder is a file
    assert last.startswith("FileExistsError") and "runs/base/seed1" in last
    assert f"job 2 failed (exit code 1): {last}; its log: {log}\n" in captured.out
    assert "1 job(s) failed (see above); the runs finished are kept" in captured.err
    # Job 1's runs (base seed0, nl seed0) finished and are in runs.csv; job 2's second
    # run (nl seed1) never started.
    assert {(r["head"], r["seed"]) for r in read_csv(exp / "runs.csv")} == {
        ("base", "0"),
        ("nl", "0"),
    }


def _child(tmp_path: Path, code: str) -> jobs.Job:
    log = tmp_path / "job1.log"
    process = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    return jobs.Job(1, [], log, process)


def test_stop_interrupts_children_and_kills_those_that_do_not_end(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    polite = "import time; time.sleep(60)"  # KeyboardInterrupt at SIGINT
    stubborn = (
        "import pathlib, signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        f"pathlib.Path({str(ready)!r}).touch(); time.sleep(60)"
    )
    # Started as run_jobs starts them: under _interruptible, so that a child does not
    # inherit an ignored SIGINT from a parent in the background (nohup, CI).
    with jobs._interruptible():
        children = [_child(tmp_path, polite), _child(tmp_path, stubborn)]
    while not ready.exists():  # the stubborn child ignores SIGINT from here on
        time.sleep(0.05)
    jobs.stop(children, grace_s=1.0)
    assert children[0].process.returncode in (1, -2)  # ended by the interrupt
    assert children[1].process.returncode == -9  # killed after the grace time


def test_sigint_and_sigterm_interrupt_the_parent_even_where_sigint_was_ignored() -> None:
    # In the background (`nohup ... &`) SIGINT is ignored, and children would inherit that.
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for sent in (signal.SIGINT, signal.SIGTERM):
            with pytest.raises(KeyboardInterrupt), jobs._interruptible():
                os.kill(os.getpid(), sent)
                time.sleep(5)  # the signal arrives before this ends
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN  # restored after
    finally:
        signal.signal(signal.SIGINT, before)


def test_the_parent_reports_a_new_record_not_the_old_one(
    tiny: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base0, base1 = plan_runs(load_config(tiny), None)[:2]
    metrics = {"status": "diverged", "error": "loss is nan at iteration 1"}
    files.atomic_write_json(base0.folder.metrics, metrics)  # an old record: rewritten later
    writes_base1 = (
        "import json, pathlib, time; time.sleep(0.5); "
        f"pathlib.Path({str(base1.folder.path)!r}).mkdir(parents=True); "
        f"pathlib.Path({str(base1.folder.metrics)!r}).write_text(json.dumps({metrics!r}))"
    )
    child = _child(tiny.parent, writes_base1)
    child.runs = [base0, base1]
    assert jobs.watch([child], total=2, done_before=0, poll_s=0.05) == []
    out = capsys.readouterr().out
    assert "base seed1: diverged (loss is nan at iteration 1)" in out
    assert "base seed0" not in out


def test_a_run_started_over_is_counted_once_in_the_progress(tiny: Path) -> None:
    def log_up_to(run, iteration: int) -> None:
        run.folder.path.mkdir(parents=True, exist_ok=True)
        run.log_path.write_text(json.dumps({"event": "train", "iteration": iteration}) + "\n")

    log_up_to(plan_runs(load_config(tiny), None)[0], 2)  # an attempt stopped before a checkpoint
    run = plan_runs(load_config(tiny), None)[0]
    assert run.status == NEW
    bar = progress.ExperimentProgress(1, 0, jobs._left(run), show=False)
    seen = {run.folder.path: jobs._seen(run)}
    assert bar.iterations == 2
    jobs._follow(run, seen, bar)
    run.log_path.unlink()  # the child starts the run again
    jobs._follow(run, seen, bar)
    assert bar.trained == 0
    log_up_to(run, 1)
    jobs._follow(run, seen, bar)
    log_up_to(run, 2)
    jobs._follow(run, seen, bar)
    assert bar.trained == 2  # before: 4 trained of 2, and an ETA below zero


def test_a_new_log_that_passed_the_old_one_between_polls_is_counted_whole(tiny: Path) -> None:
    run = plan_runs(load_config(tiny), None)[0]
    run.folder.path.mkdir(parents=True)
    run.log_path.write_text(json.dumps({"event": "train", "iteration": 1}) + "\n")
    bar = progress.ExperimentProgress(1, 0, jobs._left(run), show=False)
    seen = {run.folder.path: jobs._seen(run)}
    fresh = run.log_path.with_suffix(".new")  # made before the old one goes: a new inode
    fresh.write_text(json.dumps({"event": "train", "iteration": 2}) + "\n")
    fresh.replace(run.log_path)
    jobs._follow(run, seen, bar)
    assert bar.trained == 2


def test_the_eta_never_goes_below_zero() -> None:
    bar = progress.ExperimentProgress(1, 0, 2, show=False)
    bar.step(3)  # more than planned: a resumed run logs again what it had logged
    assert bar.eta() == 0.0
