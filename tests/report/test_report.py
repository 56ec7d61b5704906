import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from attnbench.cli import main
from attnbench.report.build import build_report
from attnbench.report.stats import load_runs, summarise

FIXTURE = Path(__file__).parent / "fixtures"
T_975_DF2 = 4.302653  # Student t, 97.5% quantile, 2 degrees of freedom (3 seeds)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _hand_interval(values):
    n = len(values)
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return mean, sd, T_975_DF2 * sd / math.sqrt(n)


@pytest.fixture
def exp_dir(tmp_path):
    target = tmp_path / "fixture"
    shutil.copytree(FIXTURE, target)
    return target


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The fixture with env.json, metrics.json and config.yaml, its report built once."""
    target = tmp_path_factory.mktemp("report") / "fixture"
    shutil.copytree(FIXTURE, target)
    for head in ("none", "ema"):
        run = target / "runs" / head / "seed0"
        run.mkdir(parents=True)
        env = {"torch": "2.13.0", "device": "cpu", "device_name": "Test CPU", "threads": 2}
        env["git_commit"] = "0123456789abcdef" * 2 + ("-dirty" if head == "ema" else "")
        (run / "env.json").write_text(json.dumps(env))
    with (target / "runs.csv").open("a") as f:  # what the runner's metrics.json carry
        for head in ("none", "ema"):
            f.write(f"fixture,{head},{head},0,,memory_kind,,saved_for_backward\n")
    (target / "config.yaml").write_text(
        "name: fixture\ndata: {dataset: synthetic, image_size: 64}\n"
        "heads:\n  - {name: ema, module: ema, params: {stages: 3}}\n"
    )
    report = build_report(target, maps=False)
    assert report == target / "report.md"
    return target


def test_summary_numbers_by_hand(exp_dir):
    runs, _ = load_runs(exp_dir / "runs.csv")
    table = summarise(runs).set_index("head")
    mean, sd, half = _hand_interval([60.0, 62.0, 61.0])
    none = table.loc["none"]
    assert none["baseline"] and none["n"] == 3
    assert none["miou_mean"] == pytest.approx(mean)
    assert none["miou_std"] == pytest.approx(sd)
    assert none["miou_ci"] == pytest.approx(half, rel=1e-6)
    # Paired by seed: nonlocal - none = 10, 11, 11.5.
    d_mean, _, d_half = _hand_interval([10.0, 11.0, 11.5])
    assert table.loc["nonlocal", "delta_mean"] == pytest.approx(d_mean)
    assert table.loc["nonlocal", "delta_ci"] == pytest.approx(d_half, rel=1e-6)
    assert table.loc["nonlocal", "delta_n"] == 3
    # ema's diverged seed 3 (mIoU 5.0) is counted as diverged, not averaged.
    assert table.loc["ema", "n"] == 3 and table.loc["ema", "diverged"] == 1
    assert table.loc["ema", "miou_mean"] == pytest.approx(217.0 / 3)
    assert table.loc["ema", "seeds"] == (0, 1, 2)
    # Ranks: ema and nonlocal overlap, none stands apart.
    assert table.loc["ema", "rank"] == 1 and table.loc["ema", "tied_with"] == ("nonlocal",)
    assert table.loc["nonlocal", "rank"] == 2 and table.loc["nonlocal", "tied_with"] == ("ema",)
    assert table.loc["none", "rank"] == 3 and table.loc["none", "tied_with"] == ()
    assert table.loc["nonlocal", "macs"] == 2.5e9
    assert table.loc["ema", "train_images_per_s"] == pytest.approx(46.0)


def test_report_tables_and_figures(built):
    exp_dir = built
    text = (exp_dir / "report.md").read_text()
    e_mean, e_sd, e_half = _hand_interval([71.0, 74.0, 72.0])
    assert (
        f"| 1= | ema | ema | 3 (+1 diverged) | {e_mean:.2f} ± {e_half:.2f} | {e_sd:.2f} |" in text
    )
    d_mean, _, d_half = _hand_interval([10.0, 11.0, 11.5])
    assert f"+{d_mean:.2f} ± {d_half:.2f}" in text
    assert "| 3 | **none** | none | 3 | 61.00 ± 2.48 | 1.00 | baseline |" in text
    assert "GMACs" in text and "| 2.50 | 0.500 | 1.20 | 0.200 |" in text
    # Per-class IoU: rows are classes, columns the heads in config order.
    assert "| class | none | nonlocal | ema |" in text
    assert "| background | 72.0 | 82.8 | 83.3 |" in text
    # The diverged run is listed on its own.
    assert "| ema | ema | 3 | 1234 |" in text
    # Sweep rows make their own table (columns sorted by value) and heat map.
    assert "## Evaluation sweep: eval_stages" in text
    assert "| ema (stages=3) | 69.00 | 71.00 | 74.00 |" in text
    for name in ("miou_vs_macs.png", "miou_vs_memory.png", "curves.png", "sweep_eval_stages.png"):
        png = exp_dir / name
        assert png.read_bytes()[:8] == PNG_MAGIC and png.stat().st_size > 1000
        assert f"]({name})" in text
    summary = (exp_dir / "summary.md").read_text()
    assert "| nonlocal | nonlocal | 3 | 71.83 | 1.61 |" in summary
    assert "| ema | ema | 3 (+1 diverged) | 72.33 | 1.53 |" in summary
    assert not list(exp_dir.glob(".*.tmp"))


def test_no_sweep_rows_no_curves_no_env(exp_dir):
    runs = pd.read_csv(exp_dir / "runs.csv", dtype=str, keep_default_na=False)
    runs[runs["setting"] == ""].to_csv(exp_dir / "runs.csv", index=False)
    (exp_dir / "curves.csv").unlink()
    text = build_report(exp_dir, maps=False).read_text()
    assert "Evaluation sweep" not in text
    assert not (exp_dir / "sweep_eval_stages.png").exists()
    assert "No curves.csv." in text and not (exp_dir / "curves.png").exists()
    # Missing context is said, not invented.
    assert "device: not recorded; torch: not recorded; threads: not recorded" in text
    assert "resolution of the MAC counts: not recorded" in text
    assert "kind is not recorded" in text


def test_context_from_env_metrics_and_config(built):
    text = (built / "report.md").read_text()
    assert "device: cpu (Test CPU); torch: 2.13.0; threads: 2" in text
    assert "seeds: 0, 1, 2, 3; code: git 0123456789ab-dirty / 0123456789ab" in text
    assert "`saved_for_backward`" in text
    assert "64×64" in text
    assert "no checkpoints" not in text and "--no-maps" in text


def test_missing_runs_csv_is_a_user_error(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "runs.csv" in err and len(err.strip().splitlines()) == 1


def test_cli_report_keeps_old_maps_without_checkpoints(exp_dir, capsys):
    old = [exp_dir / f"attention_maps_{k}.png" for k in (1, 2)]
    for path in old:
        path.write_bytes(PNG_MAGIC + b"old figure")
    assert main(["report", str(exp_dir)]) == 0
    assert "report.md" in capsys.readouterr().out
    text = (exp_dir / "report.md").read_text()
    assert (exp_dir / "summary.md").is_file()
    assert all(path.read_bytes() == PNG_MAGIC + b"old figure" for path in old)
    assert "no checkpoints" in text and "earlier build" in text
    assert "](attention_maps_1.png)" in text and "](attention_maps_2.png)" in text


def test_attention_maps_from_checkpoints(exp_dir, monkeypatch):
    from attnbench.data import dataset_info
    from attnbench.experiment.config import load_config
    from attnbench.model.segmenter import build_model
    from attnbench.report.maps import render_attention_maps

    (exp_dir / "config.yaml").write_text(
        "name: fixture\nseeds: [0]\n"
        "data: {dataset: synthetic, image_size: 32, train_size: 4, val_size: 4}\n"
        "model:\n  backbone: {depth: 18, output_stride: 8, width: 8}\n"
        "  head: {channels: 16, aux: false}\n"
        "heads:\n  - {name: none, module: none}\n  - {name: nonlocal, module: nonlocal}\n"
        "  - {name: ema, module: ema, params: {bases: 4}}\n"
    )
    cfg = load_config(exp_dir / "config.yaml")
    classes = dataset_info(cfg.data).num_classes
    torch.manual_seed(0)
    for spec in cfg.heads:
        model = build_model(cfg.model, classes, spec.module, spec.params)
        ckpt = exp_dir / "runs" / spec.name / "seed0" / "checkpoints" / "last.pt"
        ckpt.parent.mkdir(parents=True)
        torch.save({"model": model.state_dict(), "iteration": 1}, ckpt)
        status = "diverged" if spec.name == "nonlocal" else "finished"
        (ckpt.parent.parent / "metrics.json").write_text(f'{{"status": "{status}"}}')
    # Figures of an earlier layout or of more images would mislead next to the new ones.
    for stale in ("attention_maps.png", "attention_maps_3.png"):
        (exp_dir / stale).write_bytes(PNG_MAGIC)
    from attnbench.report import map_figures

    texts, save = [], map_figures.save_figure
    monkeypatch.setattr(
        map_figures,
        "save_figure",
        lambda fig, path: texts.append([t.get_text() for t in fig.texts]) or save(fig, path),
    )
    note = render_attention_maps(exp_dir, num_images=2, caption="device: cpu; seeds: 0")
    assert len(texts) == 3 and all("device: cpu; seeds: 0" in t for t in texts)
    assert "none seed 0" in note and "ema seed 0" in note
    assert "nonlocal" not in note  # a diverged run's weights are not drawn
    for name in ("attention_maps_1.png", "attention_maps_2.png", "attention_maps_ema.png"):
        assert (exp_dir / name).read_bytes()[:8] == PNG_MAGIC
    assert not (exp_dir / "attention_maps.png").exists()
    assert not (exp_dir / "attention_maps_3.png").exists()
    # One image per figure (the old single figure was 2451 x 541 px for three images).
    from PIL import Image

    with Image.open(exp_dir / "attention_maps_1.png") as figure:
        width, height = figure.size
    assert width >= 1000 and height >= 2 * 200  # two rows: input and label, then the heads


def test_attention_map_figure_has_class_legend_and_colour_bar():
    import numpy as np

    from attnbench.experiment.layout import RunFolder
    from attnbench.figures import DPI, plt
    from attnbench.report.map_figures import draw_image
    from attnbench.report.maps import HeadMaps

    names = ("background", "disk", "square")
    weights = np.linspace(0.0, 0.02, 64).reshape(8, 8)  # softmax-sized weights
    heads = [
        HeadMaps(RunFolder(h, 0, Path(h)), h, [np.zeros((8, 8), int)], [m], t, False, None)
        for h, m, t in (
            ("none", None, "no map"),
            ("pool", None, "no map"),
            ("nonlocal", weights, "attention"),
        )
    ]
    sample = (torch.zeros(3, 8, 8), torch.zeros(8, 8, dtype=torch.long))
    fig = draw_image(heads, 0, sample, (4, 4), names, "image 0")
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert [t.get_text() for t in legends[0].get_texts()] == list(names)
    # The colour bar lives in an inset: a child of the legend row's axes.
    labels = [child.get_xlabel() for ax in fig.axes for child in ax.child_axes]
    assert "map weight / the map's largest weight" in labels
    titles = {ax.get_title() for ax in fig.axes}
    assert {"nonlocal: attention", "none: no map (identity)", "label"} <= titles
    assert "pool: no map (one vector\nfor every pixel)" in titles  # not "identity"
    shown = next(ax for ax in fig.axes if ax.get_title() == "nonlocal: attention")
    assert shown.images[0].get_array().max() == pytest.approx(1.0)  # divided by its peak
    assert min(t.get_fontsize() for t in (ax.title for ax in fig.axes if ax.get_title())) >= 10
    # Every map and prediction is drawn at least 200 px wide in the saved PNG.
    fig.canvas.draw()
    for ax in fig.axes:
        if ax.images and ax.get_title():
            assert ax.get_window_extent().width * DPI / fig.dpi >= 200, ax.get_title()
    plt.close(fig)


def test_summary_throughput_shows_its_spread_and_the_contended_flag() -> None:
    from types import SimpleNamespace

    from attnbench.report.sections import _throughput

    steady = SimpleNamespace(
        train_images_per_s=150.0, train_images_per_s_q1=148.0, train_images_per_s_q3=152.5,
        contended=0.0,
    )  # fmt: skip
    assert _throughput(steady) == "150.0 (148.0–152.5)"
    shared = SimpleNamespace(**{**vars(steady), "contended": 1 / 3})
    assert _throughput(shared).endswith(" !")
    old = SimpleNamespace(train_images_per_s=155.0)  # results from before the quartiles
    assert _throughput(old) == "155.0"


def test_summary_md_is_written_before_any_figure_is_drawn(tmp_path: Path, monkeypatch) -> None:
    from attnbench.report import plots

    target = tmp_path / "exp"
    shutil.copytree(FIXTURE, target)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no figure today")

    monkeypatch.setattr(plots, "plot_curves", broken)
    with pytest.raises(RuntimeError, match="no figure today"):
        build_report(target, maps=False)
    assert (target / "summary.md").read_text().startswith("# Summary")
    assert not (target / "report.md").exists()


def test_a_suites_context_names_the_commits_of_every_probe(tmp_path: Path) -> None:
    """Probes of one suite recorded at different commits: the suite's context line
    names both, in the registry's order of the probes."""
    from attnbench.report.context import suite_environment

    for probe, commit in (("pairing", "a" * 40), ("connectivity", "b" * 40)):
        run = tmp_path / probe / "runs" / "none" / "seed0"
        run.mkdir(parents=True)
        env = {"device": "cpu", "torch": "2.13.0", "threads": 1, "git_commit": commit}
        (run / "env.json").write_text(json.dumps(env))
    env = suite_environment(tmp_path, ["pairing", "connectivity"])
    assert env["git_commit"] == "aaaaaaaaaaaa / bbbbbbbbbbbb"
    assert env["device"] == "cpu" and env["threads"] == "1" and env["env_files"] == "2"
