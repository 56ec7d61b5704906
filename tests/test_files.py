"""The atomic writer and the JSON readers."""

from __future__ import annotations

from pathlib import Path

from attnbench import files


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    files.atomic_write_json(path, {"a": float("nan"), "b": [1.5]})
    assert files.read_json(path) == {"a": None, "b": [1.5]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    path.write_text('{"cut sh')
    assert files.read_json(path) is None
