"""`run`'s first step: a Request checked and planned into a Prepared record, before any
file is written; a --jobs child's runs picked by their positions in the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.distributed import DistInfo
from attnbench.errors import UserError
from attnbench.experiment.config import load_config
from attnbench.experiment.plan import plan_runs
from attnbench.experiment.prepare import (
    Request,
    describe_prepared,
    parse_indices,
    prepare,
    select,
)

REPO = Path(__file__).parents[2]
SUITE = [
    "train.iterations=2", "data.train_size=8", "train.batch_size=4", "data.val_size=4",
    "seeds=[0, 1]", "train.device=cpu", "data.image_size=32", "probes=[pairing,retrieval]",
]  # fmt: skip


def _suite(tmp_path: Path, *extra: str, **kw: object) -> Request:
    config = str(REPO / "experiments" / "probes.yaml")
    return Request(config, (*SUITE, *extra), ("none", "isa"), str(tmp_path / "out"), **kw)


def test_a_probe_suite_becomes_one_planned_part_per_probe_and_nothing_is_written(
    tmp_path: Path,
) -> None:
    prepared = prepare(_suite(tmp_path), DistInfo())
    assert [p.cfg.name for p in prepared.parts] == ["probes/pairing", "probes/retrieval"]
    assert prepared.suite_dir == tmp_path / "out" / "probes"
    assert [p.exp_dir for p in prepared.parts] == [
        tmp_path / "out" / "probes" / probe for probe in ("pairing", "retrieval")
    ]
    for part in prepared.parts:
        assert [r.label for r in part.runs] == [
            "none seed0", "none seed1", "isa seed0", "isa seed1"
        ]  # fmt: skip
        assert (part.device.type, part.train_images, part.val_images) == ("cpu", 8, 4)
    assert prepared.runs == [r for part in prepared.parts for r in part.runs]
    assert not (tmp_path / "out").exists()
    text = describe_prepared(prepared)
    assert "probes/pairing" in text and "probes/retrieval" in text


def test_a_jobs_child_keeps_the_parts_that_hold_its_runs(tmp_path: Path) -> None:
    prepared = prepare(_suite(tmp_path, plan_indices=(5, 6)), DistInfo())
    assert [p.cfg.name for p in prepared.parts] == ["probes/retrieval"]
    assert [r.label for r in prepared.runs] == ["none seed1", "isa seed0"]


def test_what_cannot_work_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"train\.batch_size: 16 is more than the 8 training"):
        prepare(_suite(tmp_path, "train.batch_size=16"), DistInfo())
    with pytest.raises(UserError, match="does not split evenly over 3 processes"):
        prepare(_suite(tmp_path), DistInfo(world_size=3))
    with pytest.raises(UserError, match="--jobs 2: not under torchrun"):
        prepare(_suite(tmp_path, jobs=2), DistInfo(world_size=2))
    assert not (tmp_path / "out").exists()


def test_runs_are_picked_by_position_in_the_plans_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text((REPO / "experiments" / "quick.yaml").read_text())
    planned = plan_runs(load_config(path, ["seeds=[0, 1]"]), ["none", "a2"])
    assert [p.label for p in planned] == ["none seed0", "none seed1", "a2 seed0", "a2 seed1"]
    (picked,) = select([planned], parse_indices("1,2"))
    assert [p.label for p in picked] == ["none seed1", "a2 seed0"]
    # Two parts (a probe suite): positions count on from the first part into the second.
    assert select([planned[:2], planned[2:]], [1, 2]) == [[planned[1]], [planned[2]]]
    with pytest.raises(UserError, match="4 is past the plan's 4 runs"):
        select([planned], [4])
    for text in ("", "1,x", "-1"):
        with pytest.raises(UserError, match="--plan-indices"):
            parse_indices(text)
