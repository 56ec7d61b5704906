"""`python -m attnbench report runs/<experiment>`: summary.md, report.md and figures.

Every table and figure except the attention maps is a function of runs.csv and
curves.csv (runs.csv also says what the memory figure measures and at which image
size MACs are counted); each run's env.json and the experiment's config.yaml only add
context (device, torch version, threads, the data set).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from . import capability
from .build import build_report, build_suite_report
from .reference import write_beside_reference


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("exp_dir", type=Path, help="runs/<name> or results/<name> (holds runs.csv)")
    p.add_argument(
        "--no-maps",
        action="store_true",
        help="skip the attention-map figure (it loads every head's checkpoint)",
    )
    p.add_argument("--images", type=int, default=3, help="validation images in the map figure")


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
    else:
        report = build_report(exp_dir, maps=not args.no_maps, num_images=args.images)
        print(f"wrote {report} and {report.with_name('summary.md')}")
    beside = write_beside_reference(exp_dir)
    if beside is not None:
        print(f"wrote {beside} (this run beside the committed record)")
    return 0
