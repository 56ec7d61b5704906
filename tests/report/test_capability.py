"""The capability table of a probe suite, rebuilt from the per-probe CSVs alone."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from attnbench.report.capability import build_capability_report, capability_table
from attnbench.report.tables import CURVE_COLUMNS, RUN_COLUMNS

# head -> (long-range mIoU by seed, engagement, knocked-out long-range mIoU, gate open,
# gate effect or None where the module has no gate or the record predates the figure)
RUNS = {
    "none": ([31.0, 34.0, 33.0], 0.0, 31.0, 0, None),
    "pool": ([80.0, 84.0, 78.0], 0.4, 30.0, 0, None),
    "nonlocal": ([30.0, 35.0, 32.0], 0.01, 31.0, 0, None),
    "nonlocal-open": ([36.0, 29.0, 37.0], 0.6, 20.0, 1, None),
    # DANet convolves its input outside the gates: engaged with both gammas at ~0
    "danet": ([30.0, 33.0, 31.0], 1.8, 0.0, 0, 0.004),
    "danet-open": ([32.0, 30.0, 34.0], 1.7, 0.0, 1, 0.9),
    "ccnet-open": ([90.0, 30.0, 32.0], 1.2, 22.0, 1, 1.2),
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
    for name, header, body in (
        ("runs.csv", RUN_COLUMNS, rows),
        ("curves.csv", CURVE_COLUMNS, curves),
    ):
        with open(folder / name, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(body)


def test_verdicts_tell_solved_from_closed_gates_and_from_no_gain(tmp_path: Path) -> None:
    _write_probe(tmp_path / "pairing", "pairing")
    table = capability_table(tmp_path).set_index("head")
    assert table.loc["none", "verdict"] == "(baseline)"
    assert table.loc["pool", "verdict"] == "solves"
    assert table.loc["nonlocal", "verdict"] == "gate closed"
    assert table.loc["nonlocal-open", "verdict"] == "no gain"
    assert table.loc["ccnet-open", "verdict"] == "not separated"  # one seed of three solves
    assert table.loc["nonlocal-open", "gate"] == "open"
    assert table.loc["danet", "verdict"] == "gate closed"  # its engagement alone said no gain
    assert table.loc["danet-open", "verdict"] == "no gain"
    assert abs(table.loc["pool", "delta_mean"] - (80 + 84 + 78 - 31 - 34 - 33) / 3) < 1e-9
    assert table.loc["pool", "delta_ci"] > 0


def test_the_report_puts_the_table_first_and_draws_both_figures(tmp_path: Path) -> None:
    for probe in ("pairing", "retrieval"):
        _write_probe(tmp_path / probe, probe)
    written = build_capability_report(tmp_path, ["device: cpu"])
    names = {path.name for path in written}
    assert names == {"capability.csv", "summary.md", "engagement.png", "knockout.png"}
    text = (tmp_path / "summary.md").read_text()
    assert text.splitlines()[0] == "# Capability table"
    assert text.index("| probe | head |") < text.index("![engagement]")
    assert "- pairing: solved by pool." in text
    assert pd.read_csv(tmp_path / "capability.csv").shape[0] == 2 * len(RUNS)


def test_both_figures_carry_the_run_context(tmp_path: Path, monkeypatch) -> None:
    from attnbench.report import capability

    for probe in ("pairing", "retrieval"):
        _write_probe(tmp_path / probe, probe)
    drawn = []
    monkeypatch.setattr(capability, "save_figure", lambda fig, path: drawn.append(fig) or path)
    caption = "device: cpu; torch: 2.x; threads: 1\nprobes: pairing; seeds: 0, 1"
    build_capability_report(tmp_path, ["device: cpu"], caption)
    assert len(drawn) == 2
    for fig in drawn:
        assert caption in [t.get_text() for t in fig.texts]
        capability.plt.close(fig)


def test_a_module_and_its_open_gate_share_a_hue_and_every_head_its_own_colour() -> None:
    from attnbench.figures import plt
    from attnbench.report.capability import head_colours

    heads = ["none", "pool", "nonlocal", "nonlocal-open", "a2", "a2-open", "isa", "ema-t1"]
    colours = head_colours(heads)
    assert len(set(colours.values())) == len(heads)
    pairs = plt.get_cmap("tab20").colors
    dark, light = pairs.index(colours["a2"]), pairs.index(colours["a2-open"])
    assert dark % 2 == 0 and light == dark + 1  # tab20 holds a dark and a light shade per hue
