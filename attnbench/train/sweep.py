"""`run ... --executor slurm|local|debug`: the runs not done, dealt to --jobs jobs that an
existing engine runs (submitit: SLURM across nodes, or its local and debug executors).

Each job is the same command line a `--jobs` child runs (jobs.child_argv: the parent's
options, its plan positions, no report); the parent waits for every job, and the
caller writes the tables and reports as after `--jobs`. submitit is an optional
dependency: `pip install attnbench[cluster]`.
"""

from __future__ import annotations

from pathlib import Path

from .. import progress
from ..errors import UserError
from ..experiment.layout import DONE
from ..experiment.plan import Run
from ..experiment.prepare import Request
from . import jobs

EXECUTORS = ("slurm", "local", "debug")


def submit_runs(request: Request, runs: list[Run], folder: Path, executor: str) -> list[str]:
    """Train the runs not done as request.jobs jobs of `executor`; one line per failed job."""
    try:
        import submitit
    except ImportError:
        raise UserError(
            f"--executor {executor}: submitit is not installed (pip install 'attnbench[cluster]')"
        ) from None
    todo = [i for i, p in enumerate(runs) if p.status != DONE]
    dealt = jobs.deal(todo, max(1, request.jobs))
    if not dealt:
        return []
    threads = jobs.threads_per_job(1, runs[0].cfg.train.threads)  # a job has its machine
    engine = submitit.AutoExecutor(folder=folder, cluster=executor)
    engine.update_parameters(timeout_min=24 * 60, name="attnbench")
    submitted = [
        engine.submit(
            submitit.helpers.CommandFunction(
                jobs.child_argv(request, indices, threads), env=jobs.child_environment(threads)
            )
        )
        for indices in dealt
    ]
    progress.say(
        f"--executor {executor}: {len(todo)} run(s) in {len(submitted)} job(s); logs in {folder}"
    )
    failed = []
    for k, job in enumerate(submitted, 1):
        try:
            job.result()
        except Exception as err:  # a failed job: its runs stay to resume
            last = str(err).strip().splitlines()[-1:] or [repr(err)]
            failed.append(f"job {k} failed: {last[0]}")
    return failed
