"""What `run` writes and prints as each part's runs are done: its runs.csv and
curves.csv, its report, the summary table and every file written; at the end of a probe
suite, the capability report over its probes."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from ..experiment.prepare import Part, Prepared
from . import tables
from .build import build_report, build_suite_report, report_files
from .reference import write_beside_reference

RUN_FILES = "config.yaml, env.json, log.jsonl, metrics.json, checkpoints/last.pt"


def write_tables(part: Part) -> tuple[Path, int]:
    """The part's runs.csv and curves.csv, rebuilt from its run folders: (runs.csv, runs)."""
    runs_csv, _, count = tables.write_tables(part.cfg)
    return runs_csv, count


def close(part: Part, written: tuple[Path, int], report: bool) -> None:
    """What was written, the report (when asked for) and the summary, for one part."""
    runs_csv, count = written
    print(f"wrote {runs_csv} ({count} runs) and curves.csv")
    shown = build_report_safely(part.exp_dir) if report else None
    beside = write_beside_reference(part.exp_dir) if shown is not None else None
    shown = shown if beside is None else [*shown, beside]
    print(closing_text(part.exp_dir, shown), flush=True)


def close_suite(prepared: Prepared) -> None:
    """The capability report of a probe suite, once its parts are closed; nothing for an
    experiment that is not a suite."""
    if prepared.suite_dir is not None:
        for path in build_suite_report(prepared.suite_dir):
            print(f"wrote {path}")
        beside = write_beside_reference(prepared.suite_dir)
        if beside is not None:
            print(f"wrote {beside} (this run beside the committed record)")
        print(headline(prepared.suite_dir / "summary.md"), flush=True)


def headline(summary: Path) -> str:
    """The capability table's headline (what each module buys), as summary.md has it, with
    the metric it counts named: the console ends on the same table as the record."""
    text = summary.read_text()
    start, end = text.find("## What each module buys"), text.find("## Per head")
    if start < 0 or end < 0:
        return ""
    body = text[start:end].strip().removeprefix("## What each module buys").strip()
    return (
        f"\ncapability ({summary}): seeds solved of seeds run, a seed solving a probe when its "
        f"long-range mIoU (the classes a network without context cannot tell apart) reaches "
        f"the threshold summary.md gives\n\n{body}\n"
    )


def build_report_safely(exp_dir: Path) -> list[Path] | None:
    """summary.md, report.md and the figures: the files written, or None (and a warning)
    when that failed."""
    try:
        build_report(exp_dir)
    except Exception as err:  # the results are written; a failing figure must not hide them
        print(f"warning: report failed: {type(err).__name__}: {err}", file=sys.stderr)
        return None
    return report_files(exp_dir)


def closing_text(exp_dir: Path, report: list[Path] | None) -> str:
    """The summary table (summary.md without its title) and the files written; `report`:
    the report's files, None when no report was built."""
    report_built = report is not None
    lines = []
    summary = exp_dir / "summary.md"
    if report_built and summary.is_file():
        body = summary.read_text().strip().removeprefix("# Summary").strip()
        lines += [f"summary ({summary}):", "", body, ""]
    written: list[Any] = [exp_dir / "config.yaml", exp_dir / "runs.csv", exp_dir / "curves.csv"]
    if report_built:
        written += report
    lines.append("files written:")
    lines += [f"  {path}" for path in dict.fromkeys(written) if Path(path).is_file()]
    lines.append(f"  and per run, {exp_dir}/runs/<head>/seed<k>/: {RUN_FILES}")
    return "\n".join(lines)
