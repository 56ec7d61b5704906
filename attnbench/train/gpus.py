"""Which GPU each `--jobs` child sees: the visible GPUs dealt round robin, one per job.

A child started with CUDA_VISIBLE_DEVICES set to one GPU sees it as cuda:0, so the
config's train.device (auto or cuda) needs no change. The visible GPUs are the
parent's CUDA_VISIBLE_DEVICES when set (a scheduler's allocation), else every GPU
torch counts; with none, the children's environment is left alone (CPU runs).
"""

from __future__ import annotations

import os

import torch


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [g.strip() for g in listed.split(",") if g.strip() and g.strip() != "-1"]
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_of_job(job: int, gpus: list[str]) -> dict[str, str]:
    """The environment entry of 0-based job `job`: its GPU, round robin; none without GPUs."""
    if not gpus:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus[job % len(gpus)]}
