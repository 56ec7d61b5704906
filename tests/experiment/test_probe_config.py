"""Probe suites in the config: expansion, and the new keys' errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnbench.experiment.config import ConfigError, expand_probes, load_config

SUITE = """\
name: suite
probes: [pairing, retrieval]
seeds: [0]
data: {dataset: probe, image_size: 64}
model:
  backbone: {depth: 18, width: 8, stages: 0}
  head: {channels: 16, aux: false}
heads:
  - {name: none, module: none}
  - {name: nl-open, module: nonlocal, gate: open}
"""


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    return path


def test_a_suite_expands_into_one_experiment_per_probe(suite_file: Path) -> None:
    cfg = load_config(suite_file)
    parts = expand_probes(cfg)
    assert [p.name for p in parts] == ["suite/pairing", "suite/retrieval"]
    assert [p.data.probe for p in parts] == ["pairing", "retrieval"]
    assert all(p.probes == () and p.heads == cfg.heads for p in parts)
    assert cfg.heads[1].gate == "open" and cfg.model.backbone.stages == 0


def test_each_part_keeps_only_its_own_probes_options(suite_file: Path) -> None:
    """A run's saved config must not change with another probe's knobs: the pairing runs
    of a suite stay the same runs when connectivity's options change."""
    options = "data.probe_options={connectivity: {paddles: 6}}"
    cfg = load_config(suite_file, ["probes=[pairing,connectivity]", options])
    pairing, connectivity = expand_probes(cfg)
    assert pairing.data.probe_options == {}
    assert connectivity.data.probe_options == {"connectivity": {"paddles": 6}}
    plain = expand_probes(load_config(suite_file, ["probes=[pairing,connectivity]"]))[0]
    assert pairing == plain


def test_an_experiment_without_probes_is_its_own_single_part(suite_file: Path) -> None:
    cfg = load_config(suite_file, ["probes=[]"])
    assert expand_probes(cfg) == [cfg]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "probes=[counting]",
            r"probes: expected some of pairing, retrieval, connectivity, got 'counting'",
        ),
        ("data.dataset=synthetic", r"probes: a probe suite needs data\.dataset: probe"),
        ("heads.1.gate=ajar", r"heads\.1\.gate: expected one of paper, open, got 'ajar'"),
        ("model.backbone.stages=5", r"model\.backbone\.stages: expected one of 0, 1, 2, 3, 4"),
        ("data.probe=counting", r"data\.probe: expected one of pairing, retrieval, connectivity"),
        ("data.margin=0.5", r"data\.margin: expected 0 <= margin < 0\.5"),
    ],
)
def test_bad_probe_keys_name_the_key(suite_file: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(suite_file, [override])
    assert "\n" not in str(info.value)
