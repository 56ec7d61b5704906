"""End to end on a tiny synthetic experiment: files, tables, skip, resume, divergence, dry run."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import attnbench.train.loop
from attnbench.cli import main
from attnbench.experiment.config import ConfigError, load_config
from attnbench.experiment.plan import run_config
from attnbench.report import closing
from attnbench.report.tables import CURVE_COLUMNS, RUN_COLUMNS
from attnbench.train import command as runner
from attnbench.train import run as run_module

# Pinned to the CPU on purpose: these tests check files, resume and determinism, and the
# CPU figures (memory kind, device line); the CUDA path has its own checks.
TINY = """\
name: tiny
seeds: [0]
data: {{dataset: synthetic, image_size: 32, train_size: 8, val_size: 2, num_workers: 0}}
model:
  backbone: {{depth: 18, width: 8}}
  head: {{channels: 16}}
train: {{iterations: {iterations}, batch_size: 2, lr: 0.01, checkpoint_interval: {ckpt},
        log_interval: 1, eval_interval: {eval_interval}, device: cpu}}
heads:
{heads}
output_dir: {out}
"""

# Measured times and rates; a resumed run also times one window fewer (its warm-up).
TIMING = (
    "train_time_s",
    "wall_time_s",
    "train_images_per_s",
    "train_images_per_s_q1",
    "train_images_per_s_q3",
    "train_images_per_s_low",
    "train_images_per_s_high",
    "throughput_spread",
    "throughput_windows",
    "contended",
)


def write_yaml(
    tmp_path: Path,
    *,
    heads: str,
    iterations: int = 3,
    ckpt: int = 2,
    eval_interval: int = 0,
    extra: str = "",
) -> Path:
    path = tmp_path / "exp.yaml"
    text = TINY.format(
        iterations=iterations,
        ckpt=ckpt,
        eval_interval=eval_interval,
        heads=heads,
        out=tmp_path / "results",
    )
    path.write_text(text + extra)
    return path


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records report calls instead of drawing figures (the report has its own tests)."""
    calls: list[Path] = []
    monkeypatch.setattr(closing, "build_report_safely", calls.append)
    return calls


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def run(path: Path, *args: str) -> int:
    return main(["run", str(path), *args])


def test_run_writes_results_tables_and_skips_when_done(
    tmp_path: Path, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = "  - {name: base, module: none}\n  - {name: cc, module: ccnet}"
    sweep = "eval: {sweep_param: recurrence, sweep_values: [1, 2]}\n"
    path = write_yaml(tmp_path, heads=heads, iterations=2, eval_interval=1, extra=sweep)
    assert run(path) == 0
    exp = tmp_path / "results" / "tiny"
    assert reports == [exp]
    cfg = load_config(path)
    assert load_config(exp / "config.yaml") == cfg
    for head in ("base", "cc"):
        rd = exp / "runs" / head / "seed0"
        assert sorted(p.name for p in rd.iterdir()) == [
            "checkpoints",
            "config.yaml",
            "env.json",
            "log.jsonl",
            "metrics.json",
        ]
        assert load_config(rd / "config.yaml") == run_config(cfg, cfg.head(head), 0)
        environment = json.loads((rd / "env.json").read_text())
        for key in ("torch", "cuda", "device", "threads", "git_commit", "seed", "python"):
            assert key in environment
        metrics = json.loads((rd / "metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["iterations"] == 2
        assert set(metrics["iou"]) == {
            "background",
            "disk_paired",
            "disk_alone",
            "square_paired",
            "square_alone",
            "triangle_paired",
            "triangle_alone",
        }
        assert metrics["memory_kind"] == "cpu_saved_for_backward"
        assert metrics["train_memory_mb"] > 0 and metrics["macs"] > 0
        assert [p["iteration"] for p in metrics["curve"]] == [1, 2]
        events = [json.loads(line)["event"] for line in (rd / "log.jsonl").read_text().splitlines()]
        sweeps = ["sweep"] * (2 if head == "cc" else 0)
        assert events == ["train", "eval", "train", "final", *sweeps]
    cc = json.loads((exp / "runs/cc/seed0/metrics.json").read_text())
    assert cc["params_module"] > 0 and cc["macs_module"] > 0
    assert [s["setting"] for s in cc["sweep"]] == ["recurrence=1", "recurrence=2"]

    rows = read_csv(exp / "runs.csv")
    assert tuple(rows[0]) == RUN_COLUMNS
    base_metrics = {r["metric"] for r in rows if r["head"] == "base"}
    assert base_metrics == {
        "mIoU",
        "pixel_acc",
        "mean_acc",
        "iou",
        "train_time_s",
        "wall_time_s",
        "train_images_per_s",
        "train_images_per_s_q1",
        "train_images_per_s_q3",
        "train_images_per_s_low",
        "train_images_per_s_high",
        "throughput_spread",
        "throughput_windows",
        "contended",
        "threads",
        "iterations",
        "train_memory_mb",
        "train_memory_warmup_mb",
        "params",
        "params_module",
        "macs",
        "macs_module",
        "memory_kind",
        "cost_image_size",
        "gate_open",
        "engagement",
    }
    base_text = {r["metric"]: r["value"] for r in rows if r["head"] == "base"}
    assert base_text["memory_kind"] == "cpu_saved_for_backward"
    assert base_text["cost_image_size"] == f"{cfg.data.image_size}x{cfg.data.image_size}"
    assert {r["setting"] for r in rows if r["head"] == "cc"} == {"", "recurrence=1", "recurrence=2"}
    assert {r["setting"] for r in rows if r["head"] == "base"} == {""}
    assert sum(r["metric"] == "iou" for r in rows if r["head"] == "base") == 7
    miou = next(r for r in rows if r["head"] == "cc" and r["metric"] == "mIoU" and not r["setting"])
    assert float(miou["value"]) == pytest.approx(cc["mIoU"])
    curves = read_csv(exp / "curves.csv")
    assert tuple(curves[0]) == CURVE_COLUMNS
    assert {(r["metric"], r["iteration"]) for r in curves if r["head"] == "base"} == {
        ("loss", "1"),
        ("lr", "1"),
        ("mIoU", "1"),
        ("engagement", "1"),
        ("loss", "2"),
        ("lr", "2"),
        ("mIoU", "2"),
        ("engagement", "2"),
    }

    # Again, with a changed execution-only key: nothing is retrained.
    stamp = (exp / "runs/cc/seed0/metrics.json").stat().st_mtime_ns

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(run_module, "train", no_training)
    assert run(path, "--set", "train.log_interval=5") == 0
    assert (exp / "runs/cc/seed0/metrics.json").stat().st_mtime_ns == stamp
    assert read_csv(exp / "runs.csv") == rows

    # A changed recipe is refused before anything is touched.
    with pytest.raises(ConfigError, match=r"train\.lr: 0\.01 there, 0\.5 now"):
        runner.command(_args(path, overrides=["train.lr=0.5"]))
    assert (exp / "runs/cc/seed0/metrics.json").stat().st_mtime_ns == stamp


def _args(path: Path, **kw: Any) -> Any:
    from argparse import Namespace

    base = {"config": str(path), "overrides": [], "heads": None, "output_dir": None}
    return Namespace(
        **{**base, "dry_run": False, "no_report": False, "jobs": 1, "plan_indices": None, **kw}
    )


def _comparable(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if k not in TIMING}


def _train_records(run_dir: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time_s"} for r in records]


def test_killed_run_resumes_to_the_uninterrupted_result(
    tmp_path: Path, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = "  - {name: cc, module: ccnet}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole = write_yaml(tmp_path / "a", heads=heads, iterations=5, ckpt=2, eval_interval=2)
    assert run(whole) == 0
    killed = write_yaml(tmp_path / "b", heads=heads, iterations=5, ckpt=2, eval_interval=2)

    original = attnbench.train.loop.train_one_iteration
    calls = {"n": 0}

    def dies_at_four(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        if calls["n"] == 4:  # after the checkpoint at 2 and the logged iteration 3
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(attnbench.train.loop, "train_one_iteration", dies_at_four)
    with pytest.raises(KeyboardInterrupt):
        runner.command(_args(killed))
    rd_b = tmp_path / "b/results/tiny/runs/cc/seed0"
    assert not (rd_b / "metrics.json").exists()
    assert (rd_b / "checkpoints/last.pt").is_file()
    assert [r["iteration"] for r in _train_records(rd_b) if r["event"] == "train"] == [1, 2, 3]

    # What a SIGKILL in the middle of an atomic write leaves behind is cleared away.
    (rd_b / "checkpoints" / ".last.pt.x1y2.tmp").write_bytes(b"half")
    monkeypatch.setattr(attnbench.train.loop, "train_one_iteration", original)
    assert run(killed) == 0
    assert not list(rd_b.glob("**/*.tmp"))
    rd_a = tmp_path / "a/results/tiny/runs/cc/seed0"
    metrics_a = json.loads((rd_a / "metrics.json").read_text())
    metrics_b = json.loads((rd_b / "metrics.json").read_text())
    assert _comparable(metrics_b) == _comparable(metrics_a)
    assert metrics_b["weights_sha256_by_rank"] == metrics_a["weights_sha256_by_rank"]
    assert _train_records(rd_b) == _train_records(rd_a)
    state_a = torch.load(rd_a / "checkpoints/last.pt", weights_only=False)["model"]
    state_b = torch.load(rd_b / "checkpoints/last.pt", weights_only=False)["model"]
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    env_b = json.loads((rd_b / "env.json").read_text())
    assert len(env_b["resumes"]) == 1


def test_nan_loss_is_recorded_and_the_next_head_runs(
    tmp_path: Path, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    heads = "  - {name: bad, module: none}\n  - {name: good, module: none}"
    path = write_yaml(tmp_path, heads=heads, iterations=3)
    original = attnbench.train.loop.train_one_iteration
    calls = {"n": 0}

    def nan_once(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        loss = original(*args, **kwargs)
        return loss * math.nan if calls["n"] == 2 else loss

    monkeypatch.setattr(attnbench.train.loop, "train_one_iteration", nan_once)
    assert run(path) == 0
    exp = tmp_path / "results/tiny"
    bad = json.loads((exp / "runs/bad/seed0/metrics.json").read_text())
    assert bad["status"] == "diverged" and bad["diverged_at"] == 2
    assert "nan" in bad["error"]
    good = json.loads((exp / "runs/good/seed0/metrics.json").read_text())
    assert good["status"] == "finished"
    rows = read_csv(exp / "runs.csv")
    assert [r["value"] for r in rows if r["metric"] == "diverged"] == ["2"]
    assert not [r for r in rows if r["head"] == "bad" and r["metric"] == "mIoU"]
    assert [r for r in rows if r["head"] == "good" and r["metric"] == "mIoU"]
    # A diverged run counts as done: it is not repeated.
    monkeypatch.setattr(run_module, "train", None)
    assert run(path) == 0


def test_dry_run_prints_the_plan_and_writes_nothing(
    tmp_path: Path, reports: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    heads = "  - {name: base, module: none}\n  - {name: nl, module: nonlocal}"
    path = write_yaml(tmp_path, heads=heads, iterations=7)
    override = ("--set", "seeds=[1, 2]", "--set", "heads.1.params.reduction=4")
    assert run(path, "--dry-run", "--heads", "nl", *override) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("head "))
    rows = [line for line in out.splitlines() if "runs/nl/" in line]
    assert len(rows) == 2 and "nonlocal(reduction=4)" in rows[0]
    for column in ("state", "folder"):  # columns line up, whatever the module text
        at = header.index(column)
        assert all(row[at - 2 : at] == "  " and row[at] != " " for row in rows), column
    assert all(row[header.index("seed") + 3].isdigit() for row in rows)  # right-aligned
    assert "7 iterations" in out and "batch 2" in out and "device: cpu" in out
    assert "runs/nl/seed1" in out and "runs/nl/seed2" in out and "nonlocal" in out
    assert "runs/base" not in out
    assert not (tmp_path / "results").exists() and reports == []


def test_heads_subset_runs_only_those(tmp_path: Path, reports: list[Path]) -> None:
    heads = "  - {name: base, module: none}\n  - {name: other, module: none}"
    path = write_yaml(tmp_path, heads=heads, iterations=1, ckpt=1)
    assert run(path, "--heads", "other") == 0
    runs = tmp_path / "results/tiny/runs"
    assert [p.name for p in runs.iterdir()] == ["other"]
    assert {r["head"] for r in read_csv(runs.parent / "runs.csv")} == {"other"}


def test_tables_match_the_report_schema() -> None:
    from attnbench.report import stats

    assert stats.RUN_COLUMNS is RUN_COLUMNS and stats.CURVE_COLUMNS is CURVE_COLUMNS


def test_finished_run_without_checkpoint_trains_again_to_the_same_result(
    tmp_path: Path, reports: list[Path]
) -> None:
    path = write_yaml(tmp_path, heads="  - {name: base, module: none}", iterations=2)
    assert run(path) == 0
    rd = tmp_path / "results" / "tiny" / "runs" / "base" / "seed0"
    first = json.loads((rd / "metrics.json").read_text())
    shutil.rmtree(rd / "checkpoints")  # what a fresh clone of committed results holds
    assert run(path) == 0
    again = json.loads((rd / "metrics.json").read_text())
    assert (rd / "checkpoints" / "last.pt").is_file()
    assert _comparable(again) == _comparable(first)
    events = [json.loads(line)["event"] for line in (rd / "log.jsonl").read_text().splitlines()]
    assert events.count("final") == 1  # the old record's log is replaced, not appended to


def test_the_loss_is_read_once_per_log_interval_not_per_iteration(
    tmp_path: Path, reports: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Reading a loss waits for the GPU; the loop sums on the device and reads per interval.
    import attnbench.distributed

    path = write_yaml(tmp_path, heads="  - {name: base, module: none}", iterations=7, ckpt=7)
    reads: list[int] = []
    real = attnbench.distributed.all_reduce_mean

    def counting(tensor: torch.Tensor) -> torch.Tensor:
        reads.append(1)
        return real(tensor)

    monkeypatch.setattr(attnbench.distributed, "all_reduce_mean", counting)
    assert runner.command(_args(path, overrides=["train.log_interval=3"])) == 0
    assert len(reads) == 3  # iterations 3, 6 and the last, 7
    rd = tmp_path / "results/tiny/runs/base/seed0"
    logged = [json.loads(line) for line in (rd / "log.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in logged if r["event"] == "train"] == [3, 6, 7]
    metrics = json.loads((rd / "metrics.json").read_text())
    # windows after the first: 4-6 and 7; the first (1-3) is the warm-up
    assert metrics["throughput_windows"] == 2 and metrics["train_images_per_s"] > 0
    assert metrics["wall_time_s"] >= metrics["train_time_s"] > 0
    assert metrics["contended"] in (True, False) and metrics["threads"] >= 1
