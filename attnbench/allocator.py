"""glibc's malloc told to keep freed memory for reuse: set once when the CLI starts.

PyTorch on CPU takes every tensor from the C allocator. glibc serves large blocks
with mmap and hands them back with munmap at free (or trims the heap's top once
128 KiB lie free), so a training step that makes the same ten-megabyte temporaries
every iteration (an N x N attention matrix, its softmax, their gradients) gets fresh
pages from the kernel each time, and pays a page fault and a zeroed page for every
4 KiB it touches. Raising the mmap threshold to its maximum (32 MiB on 64-bit glibc)
and the trim threshold far above it keeps those blocks in the heap, where the next
step finds them. The cost: the process keeps its peak heap until it exits.

`keep_freed_memory` calls mallopt(3) through ctypes, the same as the environment
variables MALLOC_MMAP_THRESHOLD_ and MALLOC_TRIM_THRESHOLD_ set before start. It
does nothing off Linux, with another C library, when either variable is already set
(the user's choice wins), or when ATTNBENCH_MALLOC=system. Measured in
docs/performance.md.
"""

from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest on 64-bit (HEAP_MAX_SIZE / 2)
TRIM_THRESHOLD = 2**31 - 1  # bytes free at the heap's top before glibc returns them
USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
OPT_OUT = "ATTNBENCH_MALLOC"

_state = {"malloc": "system"}


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; True when they were set.
    Children started afterwards (--jobs) call it again at their own start."""
    if not sys.platform.startswith("linux") or os.environ.get(OPT_OUT) == "system":
        return False
    if any(name in os.environ for name in USER_VARIABLES):
        _state["malloc"] = "user environment"
        return False
    try:
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt if hasattr(libc, "gnu_get_libc_version") else None  # glibc
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return False
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return False
    _state["malloc"] = f"glibc mmap_threshold={MMAP_THRESHOLD} trim_threshold={TRIM_THRESHOLD}"
    return True


def setting() -> str:
    """What this process's malloc runs with, for the run's env.json."""
    return _state["malloc"]
