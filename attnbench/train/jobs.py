"""`run ... --jobs N`: N runs of an experiment in flight at once, each in a process of its own.

For experiments of many small runs, one of which leaves most of a GPU idle. The parent
plans every run as `run` does, deals the runs not done round-robin over N child
processes (`run <same yaml and options> --plan-indices i,j,...`, positions in the plan),
and watches the run folders: a run is done when its metrics.json appears. The children
write the run folders exactly as a sequential `run` does, so a re-run resumes whatever
an interrupted or failed job left.

Threads are split, not shared: each child gets the usable cores divided by the number of
children (unless train.threads pins them), set in its environment before torch starts.
N processes that each take every core spin-wait on one another and all but stop.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import attnbench

from .. import env, files, progress
from ..experiment.layout import DONE, NEW
from ..experiment.plan import Run
from ..experiment.prepare import Prepared, Request
from . import console, gpus

POLL_S = 2.0  # how often the parent reads the run folders
STOP_GRACE_S = 30.0  # how long an interrupted child may take to end before it is killed


def deal(todo: Sequence[int], jobs: int) -> list[list[int]]:
    """The plan positions of the runs to train, dealt round-robin to at most `jobs` jobs,
    so that each job gets a mix of heads; no job is left empty."""
    return [list(todo[k::jobs]) for k in range(min(jobs, len(todo)))]


def auto_jobs(prepared: Prepared) -> int:
    """`--jobs auto`: on a CPU, one process per core (per train.threads cores when the
    config pins them), at most one per run left to train. 1 on a GPU, under torchrun, in
    a --jobs child, or with fewer than two runs left: one process trains them as before.
    Each process then trains with cores / jobs threads (see threads_per_job)."""
    if prepared.info.enabled or prepared.request.plan_indices is not None:
        return 1
    if any(part.device.type != "cpu" for part in prepared.parts):
        return 1
    runs = prepared.runs
    todo = sum(run.status != DONE for run in runs)
    pinned = runs[0].cfg.train.threads if runs else 0
    return max(1, min(todo, env.usable_cores() // max(1, pinned)))


def threads_per_job(children: int, pinned: int) -> int:
    """train.threads when the config pins it, else the usable cores shared by the children."""
    return pinned if pinned > 0 else max(1, env.usable_cores() // children)


def run_label(run: Run) -> str:
    """`head seedK`, after the probe's name in a probe suite (whose parts are <name>/<probe>)."""
    part = run.cfg.name.partition("/")[2]
    return f"{part}/{run.label}" if part else run.label


def describe_split(runs: list[Run], jobs: int) -> str:
    """How `--jobs` would deal the runs (printed by --dry-run)."""
    todo = [i for i, p in enumerate(runs) if p.status != DONE]
    dealt = deal(todo, jobs)
    if not dealt:
        return f"--jobs {jobs}: nothing to train"
    threads = threads_per_job(len(dealt), runs[0].cfg.train.threads)
    lines = [
        f"--jobs {jobs}: {len(todo)} run(s) to train in {len(dealt)} processes of "
        f"{threads} thread(s) each ({env.usable_cores()} usable cores):"
    ]
    for k, indices in enumerate(dealt, 1):
        labels = ", ".join(run_label(runs[i]) for i in indices)
        count = f"{len(indices)} run{'s' if len(indices) > 1 else ''}"
        lines.append(f"  job {k} ({count}): {labels}")
    return "\n".join(lines)


@dataclasses.dataclass
class Job:
    """One child process and the runs dealt to it."""

    number: int
    runs: list[Run]
    log: Path
    process: subprocess.Popen


def child_argv(request: Request, indices: list[int], threads: int) -> list[str]:
    """The child's command line: the parent's options, its runs, its threads, no report."""
    argv = [sys.executable, "-m", "attnbench", "run", str(request.config)]
    for item in [*request.overrides, f"train.threads={threads}"]:
        argv += ["--set", item]
    if request.heads:
        argv += ["--heads", ",".join(request.heads)]
    if request.output_dir:
        argv += ["--output-dir", request.output_dir]
    return [*argv, "--no-report", "--plan-indices", ",".join(map(str, indices))]


def child_environment(threads: int) -> dict[str, str]:
    """This environment, with the thread counts the OpenMP and MKL pools start with, and
    this copy of attnbench first on the path (the child runs the parent's code)."""
    here = str(Path(attnbench.__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": f"{here}{os.pathsep}{path}" if path else here,
    }


def start(request: Request, runs: list[Run], log_dir: Path) -> list[Job]:
    """A child process per job, its output into log_dir/job<k>.log."""
    jobs = request.jobs
    todo = [i for i, p in enumerate(runs) if p.status != DONE]
    dealt = deal(todo, jobs)
    threads = threads_per_job(len(dealt), runs[0].cfg.train.threads)
    log_dir.mkdir(parents=True, exist_ok=True)
    progress.say(
        f"--jobs {jobs}: {len(todo)} run(s) in {len(dealt)} processes of {threads} thread(s) "
        f"each; their output: {log_dir}/job<k>.log"
    )
    started: list[Job] = []
    visible = gpus.visible_gpus()  # each child sees one GPU, round robin
    for k, indices in enumerate(dealt, 1):
        log = log_dir / f"job{k}.log"
        with log.open("w") as out:
            process = subprocess.Popen(
                child_argv(request, indices, threads),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**child_environment(threads), **gpus.gpu_of_job(k - 1, visible)},
                start_new_session=True,  # Ctrl-C reaches the parent alone; it stops them
            )
        started.append(Job(k, [runs[i] for i in indices], log, process))
    return started


def run_jobs(request: Request, runs: list[Run], log_dir: Path) -> list[Job]:
    """Train the runs not done in request.jobs children; returns the jobs that failed. On an
    interrupt (Ctrl-C) the children are stopped first: the runs they finished are kept."""
    with _interruptible():
        started = start(request, runs, log_dir)
        try:
            return watch(started, len(runs), sum(p.status == DONE for p in runs))
        except BaseException:
            stop(started)
            raise


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt here, so that the children are stopped.

    Also in a parent started in the background (`nohup ... &`), where SIGINT is ignored:
    the children would inherit that, and a killed parent would leave them training.
    """

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    saved = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def watch(jobs: list[Job], total: int, done_before: int, poll_s: float = POLL_S) -> list[Job]:
    """Follow the children until all have exited: a line per finished run, the experiment's
    progress and ETA (from the iterations in the runs' logs), a line per failed job."""
    pending = [run for job in jobs for run in job.runs]
    seen = {run.folder.path: _seen(run) for run in pending}
    iterations = sum(_left(run) for run in pending)
    bar = progress.ExperimentProgress(total, done_before, iterations, show=True)
    running, failed = list(jobs), []
    try:
        while running:
            alive = [job for job in running if job.process.poll() is None]
            pending = [run for run in pending if not _follow(run, seen, bar)]
            for job in running:
                if job not in alive and job.process.returncode != 0:
                    failed.append(job)
                    progress.say(failure_line(job))
            running = alive
            if running:
                time.sleep(poll_s)
    finally:
        bar.close()
    return failed


def _left(run: Run) -> int:
    """Iterations the run has still to train: all of a new run's, though an old log
    (an attempt stopped before its first checkpoint) may lie in its folder."""
    return run.cfg.train.iterations - (_iterations_logged(run) if run.status != NEW else 0)


def _seen(run: Run) -> tuple[int, Any, int | None]:
    """(iterations in its log, the metrics.json there, which log file) before the run
    starts. An old log counts nothing: a run starting over removes it and begins a new
    file, counted from 0, and a resumed one cuts it back; _follow counts increases only."""
    return _iterations_logged(run), _stamp(run.folder.metrics), _file_id(run.log_path)


def _follow(run: Run, seen: dict[Path, tuple], bar: progress.ExperimentProgress) -> bool:
    """Count the run's newly logged iterations; when its metrics.json is new, print its
    line and return True."""
    key = run.folder.path
    logged, before, log_file = seen[key]
    now, now_file = _iterations_logged(run), _file_id(run.log_path)
    if now_file != log_file:  # a new log, which may have passed the old one between polls
        logged = 0
    bar.step(max(0, now - logged))
    seen[key] = (now, before, now_file)
    metrics = files.read_json(run.folder.metrics)
    if not isinstance(metrics, dict) or "status" not in metrics:
        return False
    if _stamp(run.folder.metrics) == before:
        return False  # the old record, not yet removed by the child
    progress.say(console.result_line(run_label(run), metrics))
    bar.run_finished()
    return True


def _iterations_logged(run: Run) -> int:
    records = files.read_log(run.log_path)
    return max((r.get("iteration", 0) for r in records if r.get("event") == "train"), default=0)


def _file_id(path: Path) -> int | None:
    """The file's inode: which file is at `path`, whatever was appended to it."""
    try:
        return path.stat().st_ino
    except OSError:
        return None


def _stamp(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` (it is replaced, never rewritten in place), or None."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def failure_line(job: Job) -> str:
    """Which job failed, how, its last line of output and where the rest is."""
    last = ""
    with contextlib.suppress(OSError):
        lines = [line for line in job.log.read_text(errors="replace").splitlines() if line.strip()]
        last = lines[-1].strip() if lines else ""
    said = f": {last}" if last else ""
    return f"job {job.number} failed (exit code {job.process.returncode}){said}; its log: {job.log}"


def stop(jobs: list[Job], grace_s: float = STOP_GRACE_S) -> None:
    """Interrupt the children still running (they end as on Ctrl-C, finished runs kept) and
    kill those that have not ended after grace_s (or at a second Ctrl-C)."""
    alive = [job for job in jobs if job.process.poll() is None]
    for job in alive:
        job.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + grace_s
    try:
        for job in alive:
            with contextlib.suppress(subprocess.TimeoutExpired):
                job.process.wait(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        for job in alive:
            if job.process.poll() is None:
                job.process.kill()
                job.process.wait()
