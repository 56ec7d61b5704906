"""The capability table of a probe suite, rebuilt from the per-probe CSVs alone."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from attnbench.report.capability import capability_tables
from attnbench.report.capability_text import build_capability_report
from attnbench.report.tables import CURVE_COLUMNS, RUN_COLUMNS

# head -> (long-range mIoU by seed, engagement, knocked-out long-range mIoU, gate open,
# gate effect or None where the module has no gate or the record predates the figure)
LOW = [31.0, 34.0, 33.0, 29.0, 30.0, 32.0, 28.0, 35.0]
RUNS = {
    "none": (LOW, 0.0, 31.0, 0, None),
    "pool": ([80.0, 84.0, 78.0, 90.0, 66.0, 71.0, 52.0, 95.0], 0.4, 30.0, 0, None),
    "nonlocal": (LOW, 0.01, 31.0, 0, None),
    "nonlocal-open": ([36.0, 29.0, 37.0, 40.0, 44.0, 30.0, 31.0, 33.0], 0.6, 20.0, 1, None),
    # DANet convolves its input outside the gates: engaged with both gammas at ~0
    "danet": (LOW, 1.8, 0.0, 0, 0.004),
    "danet-open": (LOW, 1.7, 0.0, 1, 0.9),
    "ccnet-open": ([90.0, 30.0, 32.0, 75.0, 33.0, 60.0, 31.0, 29.0], 1.2, 22.0, 1, 1.2),
    "a2": (LOW, 0.01, 31.0, 0, None),  # a gated module run with its paper gate only
}


def _write_probe(folder: Path, probe: str) -> None:
    folder.mkdir(parents=True)
    rows, curves = [], []
    for head, (scores, engaged, knocked, gate, through) in RUNS.items():
        module = head.split("-")[0]
        for seed, score in enumerate(scores):
            base = [f"suite/{probe}", head, module, seed]
            rows += [
                [*base, "", "gate_open", "", gate],
                [*base, "", "long_range_mIoU", "", score],
                [*base, "", "engagement", "", engaged],
                [*base, "", "receptive_field_px", "", 17 if module == "none" else 48],
                [*base, "", "effective_receptive_field_px", "", 6],
                [*base, "knockout", "long_range_mIoU", "", knocked],
            ]
            rows += [[*base, "", "gate_effect", "", through]] if through is not None else []
            curves += [
                [f"suite/{probe}", head, seed, it, "engagement", engaged * it / 400]
                for it in (200, 400)
            ]
            curves += [
                [f"suite/{probe}", head, seed, 200, "long_range_mIoU", 33.0],
                [f"suite/{probe}", head, seed, 400, "long_range_mIoU", score],
            ]
    for name, header, body in (
        ("runs.csv", RUN_COLUMNS, rows),
        ("curves.csv", CURVE_COLUMNS, curves),
    ):
        with open(folder / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(body)


def test_verdicts_count_seeds_and_tell_solved_from_closed_gates(tmp_path: Path) -> None:
    _write_probe(tmp_path / "pairing", "pairing")
    _, heads, modules = capability_tables(tmp_path)
    table = heads.set_index("head")
    assert table.loc["none", "verdict"] == "(baseline)"
    assert table.loc["pool", "verdict"] == "solves"  # 8 of 8 against 0 of 8: disjoint
    assert table.loc["nonlocal", "verdict"] == "gate closed"
    assert table.loc["nonlocal-open", "verdict"] == "never"
    assert table.loc["ccnet-open", "verdict"] == "sometimes"  # 3 of 8 solve
    assert table.loc["nonlocal-open", "gate"] == "open"
    assert table.loc["danet", "verdict"] == "gate closed"  # its engagement alone said open
    assert table.loc["danet-open", "verdict"] == "never"
    assert (table.loc["pool", "solved"], table.loc["pool", "seeds"]) == (8, 8)
    assert table.loc["pool", "solve_low"] == pytest.approx(0.631, abs=1e-3)
    assert table.loc["none", "solve_high"] == pytest.approx(0.369, abs=1e-3)
    assert table.loc["pool", "p_improvement"] == 1.0
    assert table.loc["pool", "mann_whitney_p"] < 0.001
    assert table.loc["ccnet-open", "median_iterations_to_solve"] == 400  # curves reach it at 400
    by_module = modules.set_index("module")
    assert by_module.loc["nonlocal", "can"] == "never"  # the open head answers "can it?"
    assert by_module.loc["nonlocal", "does"] == "gate closed"  # the paper gate "does it?"
    assert by_module.loc["ccnet", "can"] == "sometimes"
    assert by_module.loc["ccnet", "does"] == "not run"  # only ccnet-open ran
    assert by_module.loc["a2", "can"] == "not run"  # only its paper gate ran
    assert by_module.loc["a2", "does"] == "gate closed"
    assert not by_module.loc["pool", "gated"]


def test_the_report_puts_the_module_table_first_and_draws_both_figures(tmp_path: Path) -> None:
    for probe in ("pairing", "retrieval"):
        _write_probe(tmp_path / probe, probe)
    written = build_capability_report(tmp_path, ["device: cpu"])
    names = {path.name for path in written}
    assert names == {
        "capability.csv", "capability_seeds.csv", "capability_modules.csv",
        "summary.md", "engagement.png", "seeds.png",
    }  # fmt: skip
    text = (tmp_path / "summary.md").read_text()
    assert text.splitlines()[0] == "# Capability table"
    assert text.index("## What each module buys") < text.index("## Per head")
    assert text.index("## Per seed") < text.index("![seeds]")
    assert "- pairing: solved by pool." in text
    assert "| `ccnet` | sometimes (3/8) | not run (only the open gate ran) |" in text
    assert "| `a2` | not run (only the paper gate ran) | gate closed (0/8) |" in text
    assert "| `pool` | solves (8/8; no gate) | the same run |" in text
    assert pd.read_csv(tmp_path / "capability.csv").shape[0] == 2 * len(RUNS)
    seeds = pd.read_csv(tmp_path / "capability_seeds.csv")
    assert seeds.shape[0] == 2 * sum(len(r[0]) for r in RUNS.values())


def test_both_figures_carry_the_run_context(tmp_path: Path, monkeypatch) -> None:
    from attnbench.report import capability_plots

    for probe in ("pairing", "retrieval"):
        _write_probe(tmp_path / probe, probe)
    drawn = []
    monkeypatch.setattr(
        capability_plots, "save_figure", lambda fig, path: drawn.append(fig) or path
    )
    caption = "device: cpu; torch: 2.x; threads: 1\nprobes: pairing; seeds: 0, 1"
    build_capability_report(tmp_path, ["device: cpu"], caption)
    assert len(drawn) == 2
    for fig in drawn:
        assert caption in [t.get_text() for t in fig.texts]
        capability_plots.plt.close(fig)


def test_a_module_and_its_open_gate_share_a_hue_and_every_head_its_own_colour() -> None:
    from attnbench.figures import plt
    from attnbench.report.capability_plots import head_colours

    heads = ["none", "pool", "nonlocal", "nonlocal-open", "a2", "a2-open", "isa", "ema-t1"]
    colours = head_colours(heads)
    assert len(set(colours.values())) == len(heads)
    pairs = plt.get_cmap("tab20").colors
    dark, light = pairs.index(colours["a2"]), pairs.index(colours["a2-open"])
    assert dark % 2 == 0 and light == dark + 1  # tab20 holds a dark and a light shade per hue
