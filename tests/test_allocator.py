"""attnbench.allocator: glibc's thresholds set at the CLI's start, unless the user chose."""

from __future__ import annotations

import platform
import sys

import pytest

from attnbench import allocator


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [("ATTNBENCH_MALLOC", "system", "system"),
     ("MALLOC_TRIM_THRESHOLD_", "131072", "user environment"),
     ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072", "user environment")],
)  # fmt: skip
def test_the_users_choice_wins(
    variable: str, value: str, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(allocator._state, "malloc", "system")
    monkeypatch.setenv(variable, value)
    assert allocator.keep_freed_memory() is False
    assert allocator.setting() == said


def test_glibc_keeps_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (*allocator.USER_VARIABLES, allocator.OPT_OUT):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(allocator._state, "malloc", "system")
    glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert allocator.keep_freed_memory() is glibc
    expected = "glibc mmap_threshold=33554432 trim_threshold=2147483647" if glibc else "system"
    assert allocator.setting() == expected
