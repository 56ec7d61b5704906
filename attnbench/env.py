"""The machine a run uses: device choice, seeding, numerical settings, and a record of it all.

On CUDA: bf16 autocast (when `train.amp`), channels_last and cudnn.benchmark, for
speed. On CPU: deterministic algorithms and full seeding, so a run repeats bit for
bit and a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import allocator
from .distributed import DistInfo
from .errors import UserError

REPO_ROOT = Path(__file__).resolve().parent.parent


def resolve_device(wanted: str, local_rank: int = 0, *, key: str = "train.device") -> torch.device:
    """`wanted` ("auto", "cpu", "cuda", "cuda:<i>") as a torch.device.

    "auto" is CUDA when available; a bare "cuda" is this process's GPU, `local_rank`.
    `key` names the setting in the error raised for a device this machine lacks.
    """
    name = wanted
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(f"{key}: {wanted!r}: CUDA is not available here")
        if name == "cuda":
            name = f"cuda:{local_rank}"
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(f"{key}: {wanted!r}: only {torch.cuda.device_count()} CUDA device(s)")
    return device


def machine_threads() -> int:
    """CPU threads for one process: the cores this process may run on, shared by the
    processes torchrun started on this node.

    Set explicitly, not left to OMP_NUM_THREADS: torchrun sets that to 1 for every
    process when it starts several, and a pinned count that exceeds the free cores
    makes every parallel region wait for the busiest core.
    """
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, usable_cores() // processes)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity; all of them off Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def numerics(device: torch.device, threads: int) -> Iterator[None]:
    """Speed settings on CUDA, determinism on CPU; the previous settings come back after."""
    saved = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        torch.get_num_threads(),
    )
    try:
        torch.set_num_threads(threads if threads > 0 else machine_threads())
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        else:
            # warn_only: an op without a deterministic kernel warns instead of failing the run.
            torch.use_deterministic_algorithms(True, warn_only=True)
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        torch.set_num_threads(saved[3])


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA when asked; full precision otherwise (CPU bf16 is slow and lossy)."""
    if device.type == "cuda" and amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def git_commit(root: Path = REPO_ROOT) -> str | None:
    """HEAD of the repository holding this package, with "-dirty" when a tracked file
    outside results/ differs from it; None outside a git checkout.

    results/ is left out on purpose: regenerating committed results rewrites tracked
    files there, and the second run of an experiment would otherwise call the code
    that made it dirty. The code, configs and experiments are what the record is for.
    """

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=True
        )
        return done.stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        status = git(
            "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if status else head


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def environment(device: torch.device, info: DistInfo, seed: int, amp: bool) -> dict[str, Any]:
    """What produced a run's numbers: software, hardware, settings and seed."""
    cuda = device.type == "cuda"
    return {
        "start_time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
        "git_commit": git_commit(),
        "argv": sys.argv,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "device": f"{device} ({device_name(device)})",
        "cpu_count": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "usable_cores": usable_cores(),
        "interop_threads": torch.get_num_interop_threads(),
        "malloc": allocator.setting(),
        "world_size": info.world_size,
        "rank": info.rank,
        "amp_dtype": "bfloat16" if cuda and amp else None,
        "channels_last": cuda,
        "cudnn_benchmark": cuda,
        "deterministic": not cuda,
    }
