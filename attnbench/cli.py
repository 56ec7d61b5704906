"""`python -m attnbench <command>`: one entry point, one sub-command per job.

Each sub-command lives in its own module, which provides `configure_parser(parser)`
and `command(args) -> int`; modules are imported only when their command runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import UserError

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("attnbench.runner", "train and evaluate every head of an experiment YAML"),
    "report": ("attnbench.report", "rebuild the tables and figures of results/<experiment>"),
    "profile": ("attnbench.profile", "MACs, parameters, memory and latency of every module"),
    "equivalence": ("attnbench.equivalence", "EMA (one stage) against A2: the measured gap"),
    "data": ("attnbench.data.download", "download and lay out Pascal VOC 2012 + SBD"),
    "readme": ("attnbench.readme", "copy results/quick's summary and figures into README.md"),
}


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `chosen`, one that imports only that command's module."""
    parser = argparse.ArgumentParser(prog="attnbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, (module_name, help_text) in COMMANDS.items():
        if chosen is not None and name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        module = importlib.import_module(module_name)
        module.configure_parser(p)
        p.set_defaults(handler=module.command)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"attnbench {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"attnbench {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
