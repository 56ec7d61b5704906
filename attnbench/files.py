"""Result files: one atomic writer and the readers of JSON files and JSON-lines logs.

Every file is written to a temporary name in the same folder and moved into place
with `os.replace`, so a run killed at any moment leaves either the old file or the
new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def umask_mode() -> int:
    """The mode open() gives a new file: 0666 less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary file beside `path` to write; it becomes `path` when the block ends.

    The temporary has the umask's mode: mkstemp creates its file 0600, and os.replace
    keeps that mode, so without the chmod every result file would be private to its
    writer. An error in the block removes the temporary and leaves `path` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        os.chmod(tmp, umask_mode())
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp, tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2) + "\n")


def json_safe(obj: Any) -> Any:
    """NaN and infinities become null: JSON has no spelling for them."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def read_json(path: Path) -> Any | None:
    """The parsed file, or None when it is missing or unreadable (e.g. cut short by a kill)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_log(path: Path) -> list[dict[str, Any]]:
    """The records of a JSON-lines log; a line cut short by a kill is skipped."""
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def remove_stale_temporaries(directory: Path) -> None:
    """Temporaries of writes that a hard kill (SIGKILL, power loss) interrupted."""
    for tmp in directory.glob("**/.*.tmp"):
        tmp.unlink(missing_ok=True)
