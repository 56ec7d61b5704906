"""`run --jobs N` on a machine with GPUs: each child sees one, dealt round robin."""

from __future__ import annotations

import pytest

from attnbench.train import gpus


def test_jobs_get_the_visible_gpus_round_robin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    visible = gpus.visible_gpus()
    assert visible == ["3", "5"]
    assigned = [gpus.gpu_of_job(k, visible) for k in range(5)]
    assert [a["CUDA_VISIBLE_DEVICES"] for a in assigned] == ["3", "5", "3", "5", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpus.visible_gpus() == [] and gpus.gpu_of_job(0, []) == {}  # CPU: left alone
