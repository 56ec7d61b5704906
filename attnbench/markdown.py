"""The one writer of Markdown tables (GitHub pipe tables) in the reports."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def md_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """`header` and `rows` as a pipe table, one line each; cells are written with str()."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
