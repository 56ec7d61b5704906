"""`--set key.path=value`: one YAML value put into the raw config before it is typed,
and YAML errors told in one line."""

from __future__ import annotations

import argparse
from typing import Any

import yaml

from ..errors import ConfigError


def apply_override(raw: dict, item: str, where: str) -> None:
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key.path=value")
    try:
        value = yaml.safe_load(text) if text else None
    except yaml.YAMLError as err:
        # The value alone is parsed: its "line 1" would say nothing, the column would.
        raise ConfigError(
            f"{where}: --set {item!r}: the value {text!r} is not valid YAML"
            + yaml_problem(err, line=False)
        ) from None
    parts = key.split(".")
    node: Any = raw
    for depth, part in enumerate(parts[:-1]):
        prefix = ".".join(parts[: depth + 1])
        if isinstance(node, list):
            node = node[_list_index(part, node, prefix)]
        else:
            node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {key}: {prefix} is a value, not a section")
    last = parts[-1]
    if isinstance(node, list):
        node[_list_index(last, node, key)] = value
    else:
        node[last] = value


def yaml_problem(err: yaml.YAMLError, *, line: bool = True) -> str:
    """' at line L, column C: what the parser found (and where that construct began)',
    for a one-line error."""

    def at(mark: Any) -> str:
        column = f"column {mark.column + 1}"
        return f"line {mark.line + 1}, {column}" if line else column

    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    text = f"{f' at {at(mark)}' if mark else ''}: {problem}"
    context, start = getattr(err, "context", None), getattr(err, "context_mark", None)
    if context and start is not None:
        text += f" ({context} that starts at {at(start)})"
    return text


def _list_index(part: str, node: list, prefix: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {prefix}: expected an index below {len(node)}")
    return int(part)


def add_override_option(parser: argparse.ArgumentParser, example: str) -> None:
    """`--set KEY=VALUE`, repeatable, into args.overrides; `example` ends its help."""
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config value by its key path, {example}",
    )
