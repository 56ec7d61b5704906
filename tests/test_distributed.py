"""Two processes on CPU (gloo) under torchrun: identical weights, and only rank 0 writes.

The device is pinned to the CPU: with `auto` on a one-GPU machine both ranks would
take that GPU, which NCCL refuses.

The head is EMA: its training forward all-reduces the bases, so a step that only
rank 0 takes (a cost measurement, say) would hang the run instead of passing.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch.distributed as dist

CONFIG = """\
name: dist
output_dir: {out}
data: {{dataset: synthetic, image_size: 32, train_size: 8, val_size: 3}}
model: {{backbone: {{depth: 18, width: 8}}, head: {{channels: 16}}}}
train: {{iterations: 3, batch_size: 4, checkpoint_interval: 2, log_interval: 1, device: cpu}}
heads:
  - {{name: ema, module: ema, params: {{bases: 8}}}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(not dist.is_available(), reason="torch built without distributed")
def test_two_ranks_end_with_identical_weights_and_one_writer(tmp_path: Path) -> None:
    config = tmp_path / "dist.yaml"
    out = tmp_path / "results"
    config.write_text(CONFIG.format(out=out))
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "attnbench",
        "run",
        str(config),
        "--no-report",
    ]
    proc = subprocess.run(
        command,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr

    run_dir = out / "dist" / "runs" / "ema" / "seed0"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["status"] == "finished"
    # Each rank hashed its own weights and buffers; rank 0 gathered the hashes.
    hashes = metrics["weights_sha256_by_rank"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]

    # One writer: no line of the log twice, no stray files, one printed result.
    events = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [(e["event"], e["iteration"]) for e in events] == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("final", 3),
    ]
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == [
        "dist/config.yaml",
        "dist/curves.csv",
        "dist/runs.csv",
        "dist/runs/ema/seed0/checkpoints/last.pt",
        "dist/runs/ema/seed0/config.yaml",
        "dist/runs/ema/seed0/env.json",
        "dist/runs/ema/seed0/log.jsonl",
        "dist/runs/ema/seed0/metrics.json",
    ]
    environment = json.loads((run_dir / "env.json").read_text())
    assert environment["rank"] == 0 and environment["world_size"] == 2
    assert proc.stdout.count("ema seed0: mIoU") == 1


def test_torchrun_with_one_process_trains_without_ddp_syncbn_or_a_process_group(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `torchrun --nproc_per_node 1` sets: WORLD_SIZE=1 and friends, no OMP_NUM_THREADS.
    A single process takes the plain path: no process group, no DDP, no SyncBatchNorm."""
    import torch

    from attnbench.cli import main
    from attnbench.train import loop

    for key, value in {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0",
                       "LOCAL_WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)

    def refuse(*args, **kwargs):
        raise AssertionError("a single process must not set up distributed training")

    monkeypatch.setattr(dist, "init_process_group", refuse)
    monkeypatch.setattr(loop, "DistributedDataParallel", refuse)
    monkeypatch.setattr(torch.nn.SyncBatchNorm, "convert_sync_batchnorm", refuse)
    config = tmp_path / "one.yaml"
    config.write_text(CONFIG.format(out=tmp_path / "results"))
    assert main(["run", str(config), "--no-report", "--set", "train.sync_bn=true"]) == 0
    metrics = json.loads((tmp_path / "results/dist/runs/ema/seed0/metrics.json").read_text())
    assert metrics["world_size"] == 1 and metrics["sync_bn"] is False
