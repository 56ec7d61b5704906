"""The config loader: types, unknown keys, overrides and messages that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

import modules
from attnbench.experiment.checks import check_files
from attnbench.experiment.config import (
    ConfigError,
    ExperimentConfig,
    config_to_dict,
    dump_config,
    expand_probes,
    load_config,
)

MINIMAL = """\
name: tiny
seeds: [0, 1]
heads:
  - {name: base, module: none}
  - {name: nl, module: nonlocal, params: {reduction: 4}}
train: {iterations: 5, lr: 0.02}
"""


@pytest.fixture
def yaml_file(tmp_path: Path) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(MINIMAL)
    return path


def test_loads_typed_frozen_config(yaml_file: Path) -> None:
    cfg = load_config(yaml_file)
    assert isinstance(cfg, ExperimentConfig)
    assert cfg.seeds == (0, 1)
    assert cfg.train.lr == 0.02 and cfg.train.iterations == 5
    assert cfg.heads[1].params == {"reduction": 4}
    assert cfg.data.scale_range == (0.5, 2.0)
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_overrides_reach_nested_and_listed_keys(yaml_file: Path) -> None:
    cfg = load_config(
        yaml_file,
        ["train.lr=0.5", "heads.1.params.reduction=8", "data.scale_range=[1, 1.5]", "seeds=[3]"],
    )
    assert cfg.train.lr == 0.5
    assert cfg.heads[1].params["reduction"] == 8
    assert cfg.data.scale_range == (1.0, 1.5)
    assert cfg.seeds == (3,)


def test_int_is_accepted_as_float_but_not_bool_as_int(yaml_file: Path) -> None:
    assert load_config(yaml_file, ["train.lr=1"]).train.lr == 1.0
    with pytest.raises(ConfigError, match=r"train\.iterations: expected int, got True"):
        load_config(yaml_file, ["train.iterations=true"])


def test_dump_round_trips(yaml_file: Path, tmp_path: Path) -> None:
    cfg = load_config(yaml_file, ["train.lr=0.3"])
    again = tmp_path / "again.yaml"
    again.write_text(dump_config(cfg))
    assert load_config(again) == cfg
    assert config_to_dict(cfg)["data"]["scale_range"] == [0.5, 2.0]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=0.1", r"train\.lrr: unknown key; valid keys: iterations"),
        ("train.lr=fast", r"train\.lr: expected float, got 'fast'"),
        ("heads.1.module=transformer", r"heads\.1\.module: unknown module 'transformer'; valid:"),
        ("heads.1.params.ratio=2", r"heads\.1\.params\.ratio: module 'nonlocal' has no such"),
        ("model.backbone.depth=19", r"model\.backbone\.depth: expected one of 18, 34, 50, 101"),
        ("data.dataset=coco", r"data\.dataset: expected one of synthetic, probe, voc"),
        ("data.scale_range=[1]", r"data\.scale_range: expected a list of 2 values"),
        ("train.iterations=0", r"train\.iterations: expected a positive number"),
        ("heads.1.name=base", r"heads\.1\.name: head 'base' is named twice"),
        ("heads.7.name=x", r"--set heads\.7: expected an index below 2"),
        ("lr", r"--set 'lr': expected key\.path=value"),
        ("eval.scales=[]", r"eval\.scales: expected a list of positive scales"),
        ("eval.scales=[1.0, 0]", r"eval\.scales: expected a list of positive scales"),
        ("model.head.dropout=1.5", r"model\.head\.dropout: expected 0 <= p < 1"),
        ("train.momentum=-0.9", r"train\.momentum: expected a number >= 0"),
        ("data.data_seed=-1", r"data\.data_seed: expected a number >= 0"),
    ],
)
def test_bad_values_name_the_key(yaml_file: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(yaml_file, [override])
    assert "\n" not in str(info.value)


def test_missing_voc_root_says_how_to_get_it(yaml_file: Path) -> None:
    cfg = load_config(yaml_file, ["data.dataset=voc", "data.root=/no/voc"])  # a plan needs no data
    with pytest.raises(ConfigError, match=r"data\.root: no VOC data at '/no/voc'.*--root /no/voc"):
        check_files(cfg, str(yaml_file))
    cfg = load_config(yaml_file, ["data.dataset=voc"])
    with pytest.raises(ConfigError, match=r"data\.root: the voc dataset needs a root folder"):
        check_files(cfg, str(yaml_file))
    cfg = load_config(yaml_file, ["model.backbone.pretrained=/no/such.pth"])
    with pytest.raises(ConfigError, match=r"model\.backbone\.pretrained: no such checkpoint"):
        check_files(cfg, str(yaml_file))


def test_missing_file_and_bad_yaml_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.yaml: no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain: {iterations: 2\nheads: []\n")
    # Where the parser stopped and where the unclosed mapping began, in the file's lines.
    expected = r"bad\.yaml: not valid YAML at line 3, column 6: .*starts at line 2, column 8"
    with pytest.raises(ConfigError, match=expected):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(listed)


def test_required_keys(tmp_path: Path) -> None:
    path = tmp_path / "noheads.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ConfigError, match="heads: required key is missing"):
        load_config(path)


def test_bad_hyper_parameter_value_is_a_config_error(yaml_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"heads\.1\.params"):
        load_config(yaml_file, ["heads.1.params.reduction=0"])


def test_shipped_experiments_load() -> None:
    root = Path(__file__).resolve().parents[2] / "experiments"
    paths = sorted(root.glob("*.yaml"))
    assert {p.stem for p in paths} >= {"quick", "voc_heads", "ema_stages", "context"}
    assert {"cityscapes_heads", "ade20k_heads"} <= {p.stem for p in paths}
    for path in paths:
        real_data = ["data.root=/tmp", "model.backbone.pretrained=null"]
        cfg = load_config(path, real_data if path.stem.endswith("_heads") else [])
        assert cfg.heads


def test_dataset_recipes_follow_mmseg() -> None:
    root = Path(__file__).resolve().parents[2] / "experiments"
    local = ["data.root=/tmp", "model.backbone.pretrained=null"]
    city = load_config(root / "cityscapes_heads.yaml", local)
    ade = load_config(root / "ade20k_heads.yaml", local)
    assert (city.data.crop_size, city.data.base_size) == ((512, 1024), (2048, 1024))
    assert (city.train.iterations, city.train.batch_size) == (80000, 8)
    assert (ade.data.crop_size, ade.data.base_size) == ((512, 512), (2048, 512))
    assert (ade.train.iterations, ade.train.batch_size) == (80000, 16)
    for cfg in (city, ade):
        assert cfg.model.backbone.depth == 50 and cfg.model.backbone.output_stride == 8
        assert {h.module for h in cfg.heads} == set(modules.available()) - {"pool"}


def test_eval_mode_and_crop_are_checked(yaml_file: Path) -> None:
    cfg = load_config(
        yaml_file, ["eval.mode=slide", "eval.window=[8, 16]", "data.crop_size=[4, 8]"]
    )
    assert cfg.eval.window == (8, 16) and cfg.data.crop_size == (4, 8)
    assert cfg.sliding_window() == ((8, 16), (4, 8))  # stride: half the window
    assert load_config(yaml_file, ["eval.mode=slide", "data.crop_size=6"]).sliding_window() == (
        (6, 6),
        (3, 3),
    )
    assert load_config(yaml_file).sliding_window() is None
    with pytest.raises(ConfigError, match=r"eval\.mode: expected one of whole, slide"):
        load_config(yaml_file, ["eval.mode=tiles"])
    with pytest.raises(ConfigError, match=r"eval\.stride: expected a positive number"):
        load_config(yaml_file, ["eval.stride=[0, 4]"])
    with pytest.raises(ConfigError, match=r"data\.crop_size: expected a size or \[height, width\]"):
        load_config(yaml_file, ["data.crop_size=[1, 2, 3]"])


def test_probes_and_ema_stages_share_one_recipe() -> None:
    """ema_stages is the EMA grid on the CPU pairing probe: the same task, model and training."""
    root = Path(__file__).resolve().parents[2] / "experiments"
    probes, stages = load_config(root / "probes.yaml"), load_config(root / "ema_stages.yaml")
    pairing = {part.data.probe: part for part in expand_probes(probes)}["pairing"]
    assert pairing.data == stages.data
    assert probes.model == stages.model and probes.train == stages.train
    assert stages.eval.knockout and stages.eval.sweep_param == "eval_stages"
    assert all(h.gate == "open" for h in stages.heads)  # quick's closed gates measured nothing
    assert stages.head("ema-t1").params == {"bases": 16, "stages": 1}


def test_the_cpu_gate_ablation_shares_the_probe_recipe_and_pairs_every_gated_module() -> None:
    root = Path(__file__).resolve().parents[2] / "experiments"
    probes, gates = load_config(root / "probes.yaml"), load_config(root / "probes_gates.yaml")
    pairing = {part.data.probe: part for part in expand_probes(probes)}["pairing"]
    assert gates.probes == ("pairing",) and expand_probes(gates)[0].data == pairing.data
    assert gates.model == probes.model and gates.train == probes.train
    paper = {h.module for h in gates.heads if h.gate == "paper" and h.module != "none"}
    opened = {h.module for h in gates.heads if h.gate == "open"}
    assert paper == opened == {"nonlocal", "a2", "ccnet", "danet", "ema"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{stages: 0}", "stages must be a whole number >= 1"),
        ("{eval_stages: 2.5}", "eval_stages must be a whole number >= 1"),
        ("{bases: 0}", "needs at least one basis"),
        ("{momentum: 1.5}", r"momentum must be in \[0, 1\]"),
        ("{temperature: 0}", "temperature must be positive"),
    ],
)
def test_bad_ema_values_fail_at_load(yaml_file: Path, params: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"heads\.1\.params: EMAUnit {message}"):
        load_config(yaml_file, ["heads.1.module=ema", f"heads.1.params={params}"])
