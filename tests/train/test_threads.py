"""Threads come from the machine unless the config pins them, and are recorded."""

from __future__ import annotations

import pytest
import torch

from attnbench import env


def test_machine_threads_share_the_usable_cores_between_local_processes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(env, "usable_cores", lambda: 16)
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert env.machine_threads() == 16
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")  # torchrun --nproc_per_node 4
    assert env.machine_threads() == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "32")
    assert env.machine_threads() == 1


def test_numerics_sets_threads_explicitly_and_restores_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = torch.get_num_threads()
    monkeypatch.setattr(env, "machine_threads", lambda: before + 1)
    # OMP_NUM_THREADS=1, as torchrun sets it for several processes, does not decide.
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with env.numerics(torch.device("cpu"), 0):
        assert torch.get_num_threads() == before + 1
    with env.numerics(torch.device("cpu"), 3):
        assert torch.get_num_threads() == 3
    assert torch.get_num_threads() == before
