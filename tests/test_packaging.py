"""The install promise of the README: torch is required from a version on, never capped."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from packaging.requirements import Requirement
from packaging.version import Version

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def _dependencies() -> list[str]:
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    # Python 3.10 has no TOML reader: the installed metadata holds the same list.
    from importlib.metadata import requires

    return [r for r in requires("attnbench") or [] if "extra ==" not in r]


def _torch_requirement() -> Requirement:
    found = [Requirement(text) for text in _dependencies()]
    torch_req = [r for r in found if r.name == "torch"]
    assert len(torch_req) == 1, found
    return torch_req[0]


def test_torch_has_a_lower_bound_and_no_upper_bound() -> None:
    specifier = _torch_requirement().specifier
    operators = {spec.operator for spec in specifier}
    assert operators == {">="}, f"torch requirement {specifier} caps or pins torch"
    # Far-future versions stay installable: pip never downgrades a newer torch for us.
    for future in ("3.0", "9.9.9", "2.99.0+cu128"):
        assert specifier.contains(future, prereleases=True), future


def test_the_installed_torch_satisfies_the_requirement() -> None:
    installed = Version(torch.__version__)
    assert _torch_requirement().specifier.contains(installed, prereleases=True)
