"""`python -m attnbench report results/<experiment>`: summary.md, report.md and figures.

Every table and figure except the attention maps is a function of runs.csv and
curves.csv (runs.csv also says what the memory figure measures and at which image
size MACs are counted); each run's env.json and the experiment's config.yaml only add
context (device, torch version, threads, the data set).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write_text
from . import capability
from .context import context_lines, cost_context, read_environment, read_experiment_config
from .published import published_section
from .sections import (
    LEVEL,
    Results,
    cost_figures_section,
    curves_section,
    diverged_section,
    maps_section,
    per_class_section,
    render_summary_md,
    summary_section,
    sweep_sections,
    title_section,
)
from .stats import load_curves, load_runs, summarise


def build_report(exp_dir: Path, *, maps: bool = True, num_images: int = 3) -> Path:
    """Write summary.md, report.md and the PNG figures into `exp_dir`; return report.md."""
    res = read_results(Path(exp_dir))
    summary_md = render_summary_md(res.summary, res.context, res.baseline)
    atomic_write_text(res.exp_dir / "summary.md", summary_md)
    out = [
        *title_section(res),
        *summary_section(res),
        *published_section(res.summary, res.config),
        *diverged_section(res),
        *per_class_section(res),
        *sweep_sections(res),
        *cost_figures_section(res),
        *curves_section(res),
        *maps_section(res, maps, num_images),
    ]
    report = res.exp_dir / "report.md"
    atomic_write_text(report, "\n".join(out))
    return report


def read_results(exp_dir: Path) -> Results:
    """runs.csv and curves.csv, summarised, with the context the report shows beside them."""
    runs, text = load_runs(exp_dir / "runs.csv")
    config = read_experiment_config(exp_dir)
    kinds, sizes = cost_context(text)
    summary = summarise(runs, LEVEL)
    return Results(
        exp_dir=exp_dir,
        runs=runs,
        curves=load_curves(exp_dir / "curves.csv"),
        summary=summary,
        baseline=next((r.head for r in summary.itertuples() if r.baseline), None),
        kinds=kinds,
        context=context_lines(runs, read_environment(exp_dir), config, sizes),
        config=config,
    )


def report_files(exp_dir: Path) -> list[Path]:
    """summary.md, report.md and every figure report.md shows, in its order."""
    report = exp_dir / "report.md"
    figures = re.findall(r"\]\(([^)\s]+\.png)\)", report.read_text()) if report.is_file() else []
    found = [exp_dir / "summary.md", report, *(exp_dir / name for name in figures)]
    return [path for path in dict.fromkeys(found) if path.is_file()]


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp_dir", type=Path, help="results/<experiment> (holds runs.csv)")
    p.add_argument(
        "--no-maps",
        action="store_true",
        help="skip the attention-map figure (it loads every head's checkpoint)",
    )
    p.add_argument("--images", type=int, default=3, help="validation images in the map figure")


def build_suite_report(suite_dir: Path) -> list[Path]:
    """The capability report of a probe suite (results/<suite>/<probe>/runs.csv each)."""
    suite_dir = Path(suite_dir)
    probes = capability.suite_probes(suite_dir)
    if not probes:
        raise UserError(f"{suite_dir}: no runs.csv, nor <probe>/runs.csv below it")
    env = read_environment(suite_dir / probes[0])
    config = read_experiment_config(suite_dir / probes[0])
    train = config.get("train", {}) if isinstance(config, dict) else {}
    context = [
        f"device: {env['device']}; torch: {env['torch']}; threads: {env['threads']}",
        f"probes: {', '.join(probes)}; seeds: {', '.join(map(str, config.get('seeds', [])))}; "
        f"{train.get('iterations', '?')} iterations of batch {train.get('batch_size', '?')}",
        "per-probe detail: " + ", ".join(f"[{p}]({p}/report.md)" for p in probes),
    ]
    return capability.build_capability_report(suite_dir, context)


def command(args: argparse.Namespace) -> int:
    if args.images < 1:
        raise UserError(f"--images: expected a positive number, got {args.images}")
    exp_dir = Path(args.exp_dir)
    if not (exp_dir / "runs.csv").is_file() and capability.suite_probes(exp_dir):
        for probe in capability.suite_probes(exp_dir):
            report = build_report(exp_dir / probe, maps=not args.no_maps, num_images=args.images)
            print(f"wrote {report} and {report.with_name('summary.md')}")
        for path in build_suite_report(exp_dir):
            print(f"wrote {path}")
        return 0
    report = build_report(exp_dir, maps=not args.no_maps, num_images=args.images)
    print(f"wrote {report} and {report.with_name('summary.md')}")
    return 0
