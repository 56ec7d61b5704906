"""`python -m attnbench readme`: copy an experiment's summary into README.md.

By default the probe suite's (results/probes): its capability table and figures.

The README's results section sits between two markers and is rebuilt from
results/<experiment>/summary.md and the figures beside it, never edited by hand.
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from ..errors import UserError
from ..files import atomic_write_text

START = "<!-- results:start (written by `python -m attnbench readme`; do not edit) -->"
END = "<!-- results:end -->"
FIGURES = ("miou_vs_macs.png", "attention_maps_1.png")


def results_block(exp_dir: Path, readme_dir: Path) -> str:
    """The Markdown between the markers: summary table and two figures of `exp_dir`."""
    summary = exp_dir / "summary.md"
    if not summary.is_file():
        raise UserError(f"{summary}: no summary; run `python -m attnbench report {exp_dir}`")
    # The summary's headings sit under the README's "Results": two levels down.
    prefix = Path(os.path.relpath(exp_dir.resolve(), readme_dir.resolve())).as_posix()
    body = [
        _relink(f"##{line}" if line.startswith("#") else line, prefix)
        for line in _headline(summary.read_text()).split("\n")
    ]
    lines = [START, "", "\n".join(body).strip(), ""]
    # A summary that shows its own figures (a probe suite's) needs none added.
    shown = any(line.startswith("![") for line in body)
    for name in () if shown else FIGURES:
        figure = exp_dir / name
        if not figure.is_file():
            raise UserError(f"{figure}: missing figure; run `python -m attnbench report {exp_dir}`")
        rel = Path(os.path.relpath(figure.resolve(), readme_dir.resolve()))
        lines += [f"![{figure.stem}]({rel.as_posix()})", ""]
    lines.append(END)
    return "\n".join(lines)


def _headline(summary: str) -> str:
    """A capability summary without its per-head and per-seed tables (a link to them
    instead): the README shows what each module buys and the figures."""
    start, figures = summary.find("## Per head"), summary.find("\n![")
    if start < 0 or figures < start:
        return summary
    link = "Per head (tests, intervals, verdicts) and per seed: [summary.md](summary.md).\n"
    return summary[:start] + link + summary[figures:]


def _relink(line: str, prefix: str) -> str:
    """Links relative to the summary's folder, made relative to the README's."""
    return re.sub(r"\]\((?![a-z]+:|/|#)([^)]+)\)", lambda m: f"]({prefix}/{m.group(1)})", line)


def update_readme(readme: Path, exp_dir: Path) -> bool:
    """Replace the marked block of `readme`; True when the file changed."""
    if not readme.is_file():
        raise UserError(f"{readme}: no such file")
    text = readme.read_text()
    if START not in text or END not in text:
        raise UserError(f"{readme}: expected the markers {START!r} and {END!r}")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + results_block(exp_dir, readme.parent) + tail
    if new == text:
        return False
    atomic_write_text(readme, new)
    return True


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--readme", type=Path, default=Path("README.md"))
    p.add_argument("--experiment", type=Path, default=Path("results/probes"))


def command(args: argparse.Namespace) -> int:
    changed = update_readme(args.readme, args.experiment)
    print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0
