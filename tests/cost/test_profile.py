"""Growth fits and the `profile` command in --quick mode."""

from __future__ import annotations

import argparse
import math

import pandas as pd
import pytest
import torch

from attnbench.cost.profile import _over_cap, command, configure_parser
from attnbench.cost.report import fit_exponents, formula_limit
from attnbench.errors import UserError


def test_fit_recovers_known_exponents() -> None:
    rows = []
    for side in (8, 16, 32):
        n = side * side
        for metric, value in (("macs", 5 * n**2), ("macs_formula", 5 * n**2), ("lat_infer_ms", n)):
            rows.append({"module": "m", "height": side, "width": side, "metric": metric,
                         "value": value})  # fmt: skip
    fits = fit_exponents(pd.DataFrame(rows), {"m": 2.0}).set_index("metric")
    assert fits.loc["macs", "exponent_fit"] == pytest.approx(2.0)
    assert fits.loc["macs", "formula_top"] == pytest.approx(2.0)
    assert fits.loc["lat_infer_ms", "exponent_top"] == pytest.approx(1.0)
    assert formula_limit(lambda h, w: (h * w) ** 1.5) == pytest.approx(1.5)
    assert math.isnan(formula_limit(lambda h, w: 0))


def test_sweep_cap_extrapolates_the_last_point() -> None:
    def quadratic(h: int, w: int) -> int:
        return (h * w) ** 2

    def linear(h: int, w: int) -> int:
        return h * w

    caps = (1.0, 100.0)  # seconds, MB
    # 8x8 -> 12x12 with MACs ~ N^2: 0.1 s * 5.06 = 0.51 s and 1 MB * 5.06: both fit
    assert _over_cap([(64, 0.1, 1.0)], 144, quadratic, caps) is None
    # 8x8 -> 32x32: 0.1 s * 256 breaks the time cap
    assert "forward" in _over_cap([(64, 0.1, 1.0)], 1024, quadratic, caps)
    # memory measured linear (10 -> 40 MB over 4x N): 40 MB * 64 breaks the memory cap
    assert "memory" in _over_cap([(16, 1e-3, 10.0), (64, 1e-3, 40.0)], 4096, linear, caps)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(list(argv))


def test_profile_quick_writes_every_file(tmp_path) -> None:
    # The default device: on a GPU machine the files are named after it (paper_cuda_<name>).
    args = _parse("--quick", "--out", str(tmp_path), "--modules", "none", "nonlocal", "ccnet")
    assert command(args) == 0
    [paper_csv] = tmp_path.glob("paper*.csv")
    suffix = paper_csv.stem.removeprefix("paper")
    assert (suffix == "") == (not torch.cuda.is_available())
    names = ["paper.csv", "paper.md", "sweep.csv", "sweep_fit.csv", "sweep_fit.md"]
    names += ["sweep_macs.png", "sweep_memory.png", "sweep_latency.png"]
    for name in names:
        stem, ext = name.split(".")
        assert (tmp_path / f"{stem}{suffix}.{ext}").stat().st_size > 0, name
    assert not list(tmp_path.glob(".*tmp"))

    paper = pd.read_csv(paper_csv, keep_default_na=False)
    columns = ["scope", "module", "setting", "height", "width", "metric", "value"]
    columns += ["unit", "method", "device", "dtype", "torch", "threads"]
    assert set(columns) <= set(paper.columns)
    assert set(paper["scope"]) == {"device", "module", "head"}
    assert {"ccnet"} == set(paper.loc[paper["setting"] == "recurrence=1", "module"])
    wide = paper[paper["scope"] != "device"].pivot_table(
        index=["scope", "module", "setting", "height"], columns="metric", values="value"
    )
    assert len(wide) == 8  # (none, nonlocal, ccnet, ccnet r1) x (module, head at one size)
    for metric in ("macs", "params", "mem_infer_mb", "mem_train_mb", "mem_saved_mb"):
        assert metric in wide
    assert (wide["unsupported_ops"] == 0).all()
    assert (wide["lat_infer_ms"] > 0).all() and (wide["lat_train_ms"] > 0).all()
    assert (wide.loc["head", "macs"] > 0).all()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    assert (paper["device"] == device).all() and (paper["dtype"] == "float32").all()
    assert "MACs = multiply-accumulates" in (tmp_path / f"paper{suffix}.md").read_text()

    sweep = pd.read_csv(tmp_path / f"sweep{suffix}.csv")
    assert set(sweep["module"]) == {"none", "nonlocal", "ccnet"}
    assert set(sweep["scope"]) == {"module"}
    fits = pd.read_csv(tmp_path / f"sweep_fit{suffix}.csv")
    nonlocal_macs = fits[(fits["module"] == "nonlocal") & (fits["metric"] == "macs")].iloc[0]
    assert nonlocal_macs["exponent_fit"] == pytest.approx(nonlocal_macs["formula_fit"], abs=0.05)


def test_profile_rejects_unknown_module_and_cpu_half(tmp_path) -> None:
    with pytest.raises(UserError, match="unknown"):
        command(_parse("--quick", "--out", str(tmp_path), "--modules", "nope"))
    with pytest.raises(UserError, match="float32"):
        command(_parse("--quick", "--device", "cpu", "--dtype", "float16", "--out", str(tmp_path)))


def test_killed_paper_profile_resumes_without_measuring_again(tmp_path, monkeypatch) -> None:
    import attnbench.cost.profile as profile

    argv = ("--quick", "--device", "cpu", "--out", str(tmp_path), "--parts", "paper")
    argv += ("--modules", "none", "a2")
    assert command(_parse(*argv)) == 0
    first = pd.read_csv(tmp_path / "paper.csv", keep_default_na=False)
    # Cut the table back to what a run killed during its last case leaves behind.
    last = (first["module"] == "a2") & (first["scope"] == "head")
    first[~last].to_csv(tmp_path / "paper.csv", index=False)
    measured: list[str] = []
    real = profile.measure_case

    def counting(case, *args, **kwargs):
        measured.append(case.label)
        return real(case, *args, **kwargs)

    monkeypatch.setattr(profile, "measure_case", counting)
    assert command(_parse(*argv)) == 0
    assert measured == ["head:a2@9x9"]
    again = pd.read_csv(tmp_path / "paper.csv", keep_default_na=False)
    kept = again[~((again["module"] == "a2") & (again["scope"] == "head"))]
    assert kept["value"].tolist() == first[~last]["value"].tolist()
    assert len(again) == len(first)


def test_paper_profile_resumes_a_table_without_its_matmul_row(tmp_path) -> None:
    argv = ("--quick", "--device", "cpu", "--out", str(tmp_path), "--parts", "paper")
    argv += ("--modules", "none", "a2")
    assert command(_parse(*argv)) == 0
    first = pd.read_csv(tmp_path / "paper.csv", keep_default_na=False)
    cut = (first["metric"] == "matmul_macs_per_s") | (
        (first["module"] == "a2") & (first["scope"] == "head")
    )
    first[~cut].to_csv(tmp_path / "paper.csv", index=False)
    assert command(_parse(*argv)) == 0  # once a StopIteration traceback
    again = pd.read_csv(tmp_path / "paper.csv", keep_default_na=False)
    assert (again["metric"] == "matmul_macs_per_s").sum() == 1  # this run's rate
    assert len(again) == len(first)


def test_quick_profile_defaults_away_from_the_committed_one(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert (
        command(_parse("--quick", "--device", "cpu", "--parts", "paper", "--modules", "none")) == 0
    )
    assert (tmp_path / "runs" / "profile-quick" / "paper.csv").is_file()
    assert not (tmp_path / "results" / "profile").exists()


@pytest.mark.parametrize("out", ["results/profile", "results/profile/", "REPO"])
def test_quick_profile_refuses_the_committed_folder(tmp_path, monkeypatch, out) -> None:
    from attnbench.env import REPO_ROOT

    monkeypatch.chdir(tmp_path)
    target = str(REPO_ROOT / "results" / "profile") if out == "REPO" else out
    before = sorted((REPO_ROOT / "results" / "profile").iterdir())
    stamps = [p.stat().st_mtime_ns for p in before]
    with pytest.raises(UserError, match=r"--quick .* would overwrite the committed"):
        command(_parse("--quick", "--out", target, "--modules", "none"))
    assert not (tmp_path / "results").exists()
    assert [p.stat().st_mtime_ns for p in before] == stamps


def test_replot_redraws_the_sweep_without_measuring(tmp_path, monkeypatch) -> None:
    import attnbench.cost.profile as profile

    argv = ("--quick", "--device", "cpu", "--out", str(tmp_path), "--parts", "sweep")
    argv += ("--modules", "none", "a2")
    assert command(_parse(*argv)) == 0
    figures = ["sweep_macs.png", "sweep_memory.png", "sweep_latency.png"]
    for name in figures:
        (tmp_path / name).unlink()

    def refuse(*args, **kwargs):
        raise AssertionError("--replot measured something")

    monkeypatch.setattr(profile, "measure_sweep_point", refuse)
    monkeypatch.setattr(profile, "matmul_rate", refuse)
    assert command(_parse("--replot", "--out", str(tmp_path))) == 0
    for name in figures:
        assert (tmp_path / name).stat().st_size > 0, name
    with pytest.raises(UserError, match="no sweep"):
        command(_parse("--replot", "--out", str(tmp_path / "empty")))


def test_latency_figure_leaves_the_identity_out_and_says_so() -> None:
    from attnbench.cost.report import _latency_note

    latency = pd.DataFrame(
        {"module": ["none", "none", "a2", "a2"], "value": [0.004, 0.006, 2.0, 70.0]}
    )
    drawn, note = _latency_note(latency)
    assert set(drawn["module"]) == {"a2"}
    assert "none (identity): 0.004–0.006 ms" in note
    assert _latency_note(latency[latency["module"] == "a2"])[1] == ""


def test_percent_of_peak_never_exceeds_100(tmp_path, monkeypatch) -> None:
    import attnbench.cost.profile as profile

    # A reference far slower than any case: every case beats it, as convolutions can.
    monkeypatch.setattr(profile, "matmul_rate", lambda *a, **k: (1.0, "float32, fake"))
    argv = ("--quick", "--device", "cpu", "--out", str(tmp_path), "--parts", "paper")
    argv += ("--modules", "none", "a2")
    assert command(_parse(*argv)) == 0
    text = (tmp_path / "paper.md").read_text()
    assert "the fastest measured case" in text and "float32, fake" in text
    table = [line.split("|")[1:-1] for line in text.splitlines() if line.startswith("| ")]
    header, rows = [c.strip() for c in table[0]], table[1:]
    columns = [header.index("infer % of peak"), header.index("train % of peak")]
    percents = [float(row[i].replace(",", "")) for row in rows for i in columns]
    assert len(percents) == 8 and max(percents) == 100.0 and min(percents) >= 0


def test_small_mac_counts_keep_their_digits() -> None:
    from attnbench.cost.report import _giga

    assert [_giga(v) for v in (12.345, 1.0, 0.00295, 0.000262, 1.02e-06, 0.0)] == [
        "12.35",
        "1.00",
        "0.00295",
        "0.000262",
        "1.02e-06",
        "0.00",
    ]
