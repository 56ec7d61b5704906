"""The atomic writer and the JSON readers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from attnbench import files


def test_atomic_write_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "metrics.json"
    files.atomic_write_json(path, {"a": float("nan"), "b": [1.5]})
    assert files.read_json(path) == {"a": None, "b": [1.5]}
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]
    path.write_text('{"cut sh')
    assert files.read_json(path) is None


def test_result_files_get_the_umask_mode_not_mkstemp_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        files.atomic_write_text(tmp_path / "summary.md", "# Summary\n")
        files.atomic_write_json(tmp_path / "env.json", {"seed": 0})
        os.umask(0o077)
        files.atomic_write_text(tmp_path / "private.md", "x\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "summary.md").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "env.json").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "private.md").stat().st_mode) == 0o600


def test_checkpoints_get_the_umask_mode(tmp_path: Path) -> None:
    from attnbench.train.checkpoint import save_checkpoint

    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "last.pt", {"iteration": 1}, is_main=True)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "last.pt").stat().st_mode) == 0o644


def test_figures_go_through_the_same_writer(tmp_path: Path) -> None:
    from attnbench.figures import plt, save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    old = os.umask(0o022)
    try:
        save_figure(fig, tmp_path / "f.png")
    finally:
        os.umask(old)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert stat.S_IMODE((tmp_path / "f.png").stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "summary.md"
    files.atomic_write_text(path, "old\n")
    try:
        with files.atomic_path(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    except RuntimeError:
        pass
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.md"]
