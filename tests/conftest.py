import os
import sys

import pytest
import torch

from attnbench.train import jobs

# Several test processes may share two cores; one thread each keeps them from thrashing.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
sys.dont_write_bytecode = True


@pytest.fixture(autouse=True)
def _one_process_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """`run` trains in one process unless a test asks for --jobs N: `--jobs auto` (the
    default) would deal the runs of every multi-run test to child processes on a
    multi-core machine. tests/train/test_jobs.py tests auto itself."""
    monkeypatch.setattr(jobs, "auto_jobs", lambda prepared: 1)
