"""train.seed_batch: seeds of a head trained as one batched model end where their
separate runs end (weights, optimizer, losses, scores, RNG), each in its own run
folder, also when interrupted and resumed; and which runs are batched together."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

# test_command.py sits beside this file (pytest puts the folder on sys.path): its tiny YAML.
from test_command import write_yaml

from attnbench.cli import main
from attnbench.distributed import DistInfo
from attnbench.experiment.config import load_config
from attnbench.experiment.plan import plan_runs
from attnbench.report import closing
from attnbench.train import batched_loop, seed_batches

# Dropout (head and aux head), BatchNorm everywhere, EMA's bases (a buffer moved in
# place) and its frozen conv, Nonlocal's attention: every kind of state a seed keeps.
HEADS = (
    "  - {name: nl, module: nonlocal, params: {reduction: 2}}\n"
    "  - {name: ema, module: ema, params: {bases: 8}}"
)
SEEDS = (0, 1, 2)


@pytest.fixture(autouse=True)
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(closing, "build_report_safely", lambda exp: None)


def _experiment(folder: Path, seed_batch: int) -> Path:
    folder.mkdir()
    path = write_yaml(folder, heads=HEADS, iterations=5, ckpt=2, eval_interval=2)
    text = path.read_text().replace("seeds: [0]", f"seeds: {list(SEEDS)}")
    path.write_text(text.replace("device: cpu}", f"device: cpu, seed_batch: {seed_batch}}}"))
    return path


def _losses(run_dir: Path) -> list[tuple[str, int, float]]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [(r["event"], r["iteration"], r.get("loss", r.get("mIoU"))) for r in records]


def _assert_same_run(batched: Path, alone: Path) -> None:
    """Same weights, optimizer state, RNG, log and scores, to float tolerance."""
    a = torch.load(alone / "checkpoints/last.pt", weights_only=False)
    b = torch.load(batched / "checkpoints/last.pt", weights_only=False)
    assert a["model"].keys() == b["model"].keys()
    for key, value in a["model"].items():
        torch.testing.assert_close(b["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    momentum_a, momentum_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert momentum_a.keys() == momentum_b.keys() and momentum_a
    for i, state in momentum_a.items():
        torch.testing.assert_close(
            momentum_b[i]["momentum_buffer"], state["momentum_buffer"], rtol=1e-4, atol=1e-5
        )

    # The rate each path stored after its last step is its schedule's business (a resumed
    # run rebuilds it from the iteration: loop.build_scheduler); the rest must agree.
    def settings(groups: list[dict]) -> list[dict]:
        return [{k: v for k, v in g.items() if k not in ("lr", "initial_lr")} for g in groups]

    assert settings(b["optimizer"]["param_groups"]) == settings(a["optimizer"]["param_groups"])
    # The dropout draws: each seed's generator is where its own run left it.
    assert torch.equal(b["rng"][0]["torch"], a["rng"][0]["torch"])
    assert b["iteration"] == a["iteration"] == 5
    log_a, log_b = _losses(alone), _losses(batched)
    assert [r[:2] for r in log_b] == [r[:2] for r in log_a]
    assert [r[2] for r in log_b] == pytest.approx([r[2] for r in log_a], rel=1e-4, abs=1e-5)
    metrics_a = json.loads((alone / "metrics.json").read_text())
    metrics_b = json.loads((batched / "metrics.json").read_text())
    assert metrics_b["seed_batch"] == len(SEEDS) and "seed_batch" not in metrics_a
    assert metrics_b["mIoU"] == pytest.approx(metrics_a["mIoU"], abs=1e-4)


def test_batched_seeds_end_where_their_separate_runs_end(tmp_path: Path) -> None:
    alone, batched = _experiment(tmp_path / "alone", 0), _experiment(tmp_path / "batched", 3)
    calls: list[int] = []
    original = batched_loop.train_seed_batch
    recorder = lambda runs, *rest: calls.append(len(runs)) or original(runs, *rest)  # noqa: E731
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(seed_batches, "train_seed_batch", recorder)
        assert main(["run", str(alone)]) == 0
        assert calls == []  # seed_batch 0: every run alone
        assert main(["run", str(batched)]) == 0
    assert calls == [3, 3]  # one batch of three seeds per head
    for head in ("nl", "ema"):
        for seed in SEEDS:
            where = f"results/tiny/runs/{head}/seed{seed}"
            _assert_same_run(tmp_path / "batched" / where, tmp_path / "alone" / where)


def test_an_interrupted_seed_batch_resumes_to_the_separate_runs_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alone, batched = _experiment(tmp_path / "alone", 0), _experiment(tmp_path / "batched", 3)
    assert main(["run", str(alone), "--heads", "nl"]) == 0
    original, steps = batched_loop._step, {"n": 0}

    def dies_at_four(*args: Any) -> float:
        steps["n"] += 1
        if steps["n"] == 4:  # after the checkpoint at 2 and the logged iteration 3
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(batched_loop, "_step", dies_at_four)
    assert main(["run", str(batched), "--heads", "nl"]) == 130  # as on Ctrl-C
    run_dir = tmp_path / "batched/results/tiny/runs/nl"
    for seed in SEEDS:
        checkpoint = torch.load(run_dir / f"seed{seed}/checkpoints/last.pt", weights_only=False)
        assert checkpoint["iteration"] == 2
    monkeypatch.setattr(batched_loop, "_step", original)
    assert main(["run", str(batched), "--heads", "nl"]) == 0
    for seed in SEEDS:
        where = f"results/tiny/runs/nl/seed{seed}"
        _assert_same_run(tmp_path / "batched" / where, tmp_path / "alone" / where)


def test_a_diverged_seed_is_recorded_and_the_others_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _experiment(tmp_path / "b", 3)
    original = batched_loop.segmentation_loss
    calls = {"n": 0}

    def seed_one_fails_at_two(*args: Any) -> torch.Tensor:
        calls["n"] += 1  # three seeds per step: call 5 is seed 1 at iteration 2
        loss = original(*args)
        return loss * math.nan if calls["n"] == 5 else loss

    monkeypatch.setattr(batched_loop, "segmentation_loss", seed_one_fails_at_two)
    assert main(["run", str(path), "--heads", "nl"]) == 0
    exp = tmp_path / "b/results/tiny/runs/nl"
    status = [json.loads((exp / f"seed{s}/metrics.json").read_text()) for s in SEEDS]
    assert [m["status"] for m in status] == ["finished", "diverged", "finished"]
    assert status[1]["diverged_at"] == 2


def test_runs_are_batched_by_head_and_start_iteration(tmp_path: Path) -> None:
    path = _experiment(tmp_path / "p", 2)
    cfg = load_config(path)
    runs = plan_runs(cfg, None)
    labels = lambda groups: [[r.label for r in g] for g in groups]  # noqa: E731
    assert labels(seed_batches.seed_batches(runs, 2, DistInfo())) == [
        ["nl seed0", "nl seed1"],
        ["nl seed2"],
        ["ema seed0", "ema seed1"],
        ["ema seed2"],
    ]
    assert labels(seed_batches.seed_batches(runs, 1, DistInfo())) == [[r.label] for r in runs]
    under_torchrun = DistInfo(rank=0, world_size=2)
    assert all(len(g) == 1 for g in seed_batches.seed_batches(runs, 3, under_torchrun))
