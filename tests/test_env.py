"""The environment record: the git commit that produced a run, honestly marked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from attnbench.env import git_commit


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "results" / "quick" / "runs.csv").write_text("head\nnone\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code and results")
    return tmp_path


def test_clean_tree_records_the_bare_commit(repo: Path) -> None:
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD")


def test_regenerated_results_do_not_make_the_code_dirty(repo: Path) -> None:
    # A second run of an experiment rewrites tracked files under results/: same code.
    (repo / "results" / "quick" / "runs.csv").write_text("head\nnone\nema\n")
    (repo / "scratch.txt").write_text("untracked notes\n")
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD")


def test_changed_code_is_dirty(repo: Path) -> None:
    (repo / "code.py").write_text("x = 2\n")
    assert git_commit(repo) == _git(repo, "rev-parse", "HEAD") + "-dirty"


def test_outside_a_checkout_there_is_no_commit(tmp_path: Path) -> None:
    assert git_commit(tmp_path / "nowhere") is None
