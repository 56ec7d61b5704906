"""summary.md, report.md and the figures of one experiment, and the capability report
of a probe suite: the report layer's entry points, for `report` and for `run`."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write_text
from . import capability
from .capability_text import build_capability_report
from .context import probe_recipe, read_experiment_config, suite_environment
from .drawing import draw_figures
from .results import read_results
from .sections import render_report, render_summary_md


def build_report(exp_dir: Path, *, maps: bool = True, num_images: int = 3) -> Path:
    """Write summary.md, report.md and the PNG figures into `exp_dir`; return report.md.

    Three stages, one way: the numbers (results), the figures drawn from them (drawing),
    then the text that names both (sections)."""
    res = read_results(Path(exp_dir))
    # summary.md first: it needs no figure, so a figure that fails cannot leave it stale.
    atomic_write_text(res.exp_dir / "summary.md", render_summary_md(res))
    figs = draw_figures(res, maps, num_images)
    report = res.exp_dir / "report.md"
    atomic_write_text(report, render_report(res, figs))
    return report


def report_files(exp_dir: Path) -> list[Path]:
    """summary.md, report.md and every figure report.md shows, in its order."""
    report = exp_dir / "report.md"
    figures = re.findall(r"\]\(([^)\s]+\.png)\)", report.read_text()) if report.is_file() else []
    found = [exp_dir / "summary.md", report, *(exp_dir / name for name in figures)]
    return [path for path in dict.fromkeys(found) if path.is_file()]


def build_suite_report(suite_dir: Path) -> list[Path]:
    """The capability report of a probe suite (results/<suite>/<probe>/runs.csv each)."""
    suite_dir = Path(suite_dir)
    probes = capability.suite_probes(suite_dir)
    if not probes:
        raise UserError(f"{suite_dir}: no runs.csv, nor <probe>/runs.csv below it")
    env = suite_environment(suite_dir, probes)
    config = read_experiment_config(suite_dir / probes[0])
    config = config if isinstance(config, dict) else {}
    context = [
        f"device: {env['device']}; torch: {env['torch']}; threads: {env['threads']}; "
        f"code: git {env['git_commit']}",
        f"probes: {', '.join(probes)}; seeds: {', '.join(map(str, config.get('seeds', [])))}; "
        + probe_recipe(config),
    ]
    detail = "per-probe detail: " + ", ".join(f"[{p}]({p}/report.md)" for p in probes)
    caption = "\n".join(context)
    return build_capability_report(suite_dir, [*context, detail], caption)
