"""Resumable checkpoints and random-number-generator states.

A checkpoint is written atomically, as every result file is (see `attnbench.files`),
and holds everything needed to continue a run bit for bit on CPU: weights, optimizer
state, the iteration, and the RNG states of every rank (python, numpy, torch CPU and
CUDA).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import distributed, files
from ..errors import UserError


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any], *, is_main: bool) -> None:
    """Collect every rank's RNG state, then rank 0 writes `state` plus those states."""
    states = distributed.all_gather_object(rng_state())
    if not is_main:
        return
    with files.atomic_path(path) as tmp:
        torch.save({**state, "rng": states}, tmp)


def load_checkpoint(path: Path, rank: int, world_size: int = 1) -> dict[str, Any] | None:
    """The checkpoint (with this rank's RNG state restored), or None if there is none."""
    if not path.is_file():
        return None
    # Our own file, holding python and numpy RNG states: not loadable with weights_only.
    state = torch.load(path, map_location="cpu", weights_only=False)
    states = state.pop("rng")
    if len(states) != world_size:
        # Another process count would shard the batches and seed dropout differently.
        raise UserError(
            f"{path}: saved by {len(states)} process(es), resumed by {world_size}; "
            "resume with the same number of processes or delete the checkpoint"
        )
    set_rng_state(states[rank])
    return state


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of every tensor's name, dtype, shape and bytes: equal hashes, equal weights."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
