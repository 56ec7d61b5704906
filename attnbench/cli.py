"""`python -m attnbench <command>`: one entry point, one sub-command per job.

`load` below says which module serves which command. Each provides
`configure_parser(parser)` and `command(args) -> int`, and is imported only when
its command runs, so that `--help` or `data` do not wait for torch and matplotlib.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from . import allocator
from .errors import UserError, one_line

Setup = Callable[[argparse.ArgumentParser], None]
Handler = Callable[[argparse.Namespace], int]


COMMANDS: dict[str, str] = {
    "run": "train and evaluate every head of an experiment YAML",
    "report": "rebuild the tables and figures of runs/<experiment> (or results/...)",
    "profile": "MACs, parameters, memory and latency of every module",
    "cost": "memory, img/s and fps of every head at a recipe, beside mmseg's",
    "equivalence": "EMA (one stage) against A2: the measured gap",
    "data": "download or check a data set: voc (+ SBD), ade20k, cityscapes",
    "readme": "copy an experiment's summary and figures into README.md (results/probes)",
}


def load(name: str) -> tuple[Setup, Handler]:
    """The command's (configure_parser, command): which module serves which command."""
    if name == "run":
        from .train.command import command, configure_parser
    elif name == "report":
        from .report.command import command, configure_parser
    elif name == "profile":
        from .cost.profile import command, configure_parser
    elif name == "cost":
        from .cost.recipe import command, configure_parser
    elif name == "equivalence":
        from .studies.equivalence import command, configure_parser
    elif name == "data":
        from .data.command import command, configure_parser
    elif name == "readme":
        from .report.readme import command, configure_parser
    else:
        raise KeyError(name)
    return configure_parser, command


def build_parser(chosen: str | None = None) -> argparse.ArgumentParser:
    """The full parser, or with `chosen`, one that imports only that command's module."""
    parser = argparse.ArgumentParser(prog="attnbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    for name, help_text in COMMANDS.items():
        if chosen is not None and name != chosen:
            sub.add_parser(name, help=help_text)
            continue
        p = sub.add_parser(name, help=help_text, description=help_text)
        configure_parser, handler = load(name)
        configure_parser(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    allocator.keep_freed_memory()  # before torch allocates (see allocator.py)
    argv = sys.argv[1:] if argv is None else argv
    chosen = argv[0] if argv and argv[0] in COMMANDS else None
    args = build_parser(chosen).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"attnbench {args.command}: error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from .progress import close_all

        close_all()  # end the bars' lines: the message must not land inside one
        print(f"attnbench {args.command}: interrupted; finished work is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
