"""`python -m attnbench run experiment.yaml`: train and evaluate every head x seed.

    python -m attnbench run experiments/quick.yaml --set train.iterations=200 --heads none,ema
    torchrun --nproc_per_node 4 -m attnbench run experiments/voc_heads.yaml

Everything is checked before anything is written: the config, --heads, the device,
the batch split over processes, the dataset files, and that no run folder holds a
run of another config. Then, per run, under <output_dir>/<exp>/runs/<head>/seed<k>/:
config.yaml (the run's resolved config, loadable by itself), env.json, log.jsonl,
checkpoints/last.pt and, last, metrics.json, which marks the run as done. The
same command run again skips done runs and resumes unfinished ones from their
checkpoint. A run whose loss becomes NaN is recorded as diverged and the next run
starts. At the end runs.csv and curves.csv are rebuilt and the report written.

One step per layer: experiment/prepare.py checks and plans every part (a Prepared
record); then, part by part, train/session.py trains what is not done and
report/closing.py writes its tables, its report and what is printed; a probe suite's
capability report comes last. So a suite interrupted in its second probe keeps the
first one's report.

Distributed: each rank trains on its slice of every global batch, and evaluates
every world_size-th validation image; the confusion matrices are summed over the
ranks. Only rank 0 writes files and prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys

from .. import distributed
from ..errors import UserError
from ..experiment.layout import experiment_dir
from ..experiment.overrides import add_override_option
from ..experiment.prepare import Prepared, Request, describe_prepared, parse_indices, prepare
from ..report import closing
from . import jobs, session, sweep


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="experiment YAML (see experiments/)")
    add_override_option(p, "e.g. train.lr=0.02 (repeatable)")
    p.add_argument("--heads", metavar="A,B", help="run only these heads (comma-separated names)")
    p.add_argument("--output-dir", help="write under this folder instead of the config's")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit; write nothing")
    p.add_argument("--no-report", action="store_true", help="skip summary.md, report.md, figures")
    p.add_argument(
        "--jobs",
        type=jobs_option,
        default="auto",
        metavar="N",
        help="train N runs at once, each in its own process with 1/N of the CPU cores; "
        "auto (the default): on a CPU one per core when two runs or more are left, else 1",
    )
    p.add_argument(
        "--executor",
        choices=sweep.EXECUTORS,
        help="run the --jobs jobs through submitit: on SLURM, or its local/debug executors",
    )
    # A --jobs child's runs: their positions in the plan (the parent sets it).
    p.add_argument("--plan-indices", help=argparse.SUPPRESS)


def command(args: argparse.Namespace) -> int:
    """Prepare (check and plan), then per part train and write its tables and report;
    the capability report of a suite last."""
    asked = request(args)
    prepared = prepare(asked, distributed.from_environment())
    if args.jobs == "auto":
        auto = dataclasses.replace(asked, jobs=jobs.auto_jobs(prepared))
        prepared = dataclasses.replace(prepared, request=auto)
    count = prepared.request.jobs
    if args.dry_run:
        if prepared.info.is_main:
            print(describe_prepared(prepared))
        if count > 1:
            print("\n" + jobs.describe_split(prepared.runs, count))
        return 0
    report = not args.no_report
    if getattr(args, "executor", None):
        return _run_in_jobs(prepared, report, args.executor)
    if count > 1:
        return _run_in_jobs(prepared, report)
    main = prepared.info.is_main
    with session.process_group(prepared):
        for part in prepared.parts:
            try:
                session.train_part(part, prepared.info)
            finally:  # the part's finished runs reach runs.csv, also on Ctrl-C or an error
                written = closing.write_tables(part) if main else None
            if written is not None:
                closing.close(part, written, report)
    if main and report:
        closing.close_suite(prepared)
    return 0


def _run_in_jobs(prepared: Prepared, report: bool, executor: str | None = None) -> int:
    """Train in --jobs child processes, then write every part's tables and reports as the
    sequential path does (only the tables when a job failed or on Ctrl-C)."""
    failed: list[jobs.Job] = []
    try:
        if executor:
            folder = experiment_dir(prepared.cfg) / "submitit"
            failed = sweep.submit_runs(prepared.request, prepared.runs, folder, executor)
            for line in failed:
                print(line, file=sys.stderr)
        else:
            failed = session.train_in_jobs(prepared)
    finally:
        written = [closing.write_tables(part) for part in prepared.parts]
    for part, tables in zip(prepared.parts, written, strict=True):
        closing.close(part, tables, report and not failed)
    if failed:
        print(
            f"attnbench run: {len(failed)} job(s) failed (see above); the runs finished are "
            "kept, and the same command resumes the others",
            file=sys.stderr,
        )
        return 1
    if report:
        closing.close_suite(prepared)
    return 0


def jobs_option(text: str) -> int | str:
    """--jobs: "auto" or a whole number (checked by prepare: 1 or more)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number, got {text!r}") from None


def request(args: argparse.Namespace) -> Request:
    """The command line as a Request."""
    heads = tuple(h.strip() for h in args.heads.split(",") if h.strip()) if args.heads else None
    if heads == ():
        raise UserError(f"--heads {args.heads!r}: expected head names, comma-separated")
    indices = None if args.plan_indices is None else parse_indices(args.plan_indices)
    return Request(
        config=str(args.config),
        overrides=tuple(args.overrides),
        heads=heads,
        output_dir=args.output_dir,
        jobs=1 if args.jobs == "auto" else args.jobs,
        plan_indices=indices,
        dry_run=args.dry_run,
    )
