"""EM attention vs double attention: the exact case and the gap in the paper's form.

One EM stage without L2 normalisation and temperature 1 reconstructs
x~ = mu1 z^T with z = softmax_K(x^T mu0) and mu1 = x z / (eps + sum_N z). An A^2
block with A = identity (c_m = C), theta = rho = the 1x1 map with weight mu0^T
(c_n = K, no bias) and the "responsibility" gather computes the same Z, so the
two agree to rounding. With the paper's gather (softmax over positions) they
differ; the gap shrinks as the temperature lambda -> 0, where both maps become
uniform. Both facts are measured here through the modules themselves
(EMAUnit.reconstruct and DoubleAttention.context), with weights copied in.

    python -m attnbench equivalence --out results/equivalence
"""

from __future__ import annotations

import argparse
import math
import pathlib
from collections.abc import Sequence

import pandas as pd
import torch

from modules.double_attention import DoubleAttention
from modules.em_attention import EMAUnit

from ..files import atomic_write_text
from ..markdown import md_table
from ..report.stats import load_runs

DEFAULT_TEMPERATURES = (1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01)
CSV_COLUMNS = ("quantity", "dtype", "temperature", "value")
# ema_stages trains A2 and EMA with T = 1 to 4 on the pairing probe, gates open.
DEFAULT_RUNS = ("results/ema_stages/runs.csv",)


def _paired_modules(
    channels: int, bases: int, temperature: float, gather: str, dtype: torch.dtype
) -> tuple[EMAUnit, DoubleAttention]:
    """An EMA unit (one stage, no L2 norm) and the A^2 block that shares its maps."""
    ema = EMAUnit(channels, bases=bases, stages=1, temperature=temperature, l2_norm=False)
    a2 = DoubleAttention(channels, c_m=channels, c_n=bases, gather=gather)
    eye = torch.eye(channels).reshape(channels, channels, 1, 1)
    # The temperature scales the energies of both maps: lambda * mu0^T x.
    proj = (temperature * ema.mu[0].t()).reshape(bases, channels, 1, 1)  # (K, C, 1, 1)
    with torch.no_grad():
        ema.conv1.weight.copy_(eye)  # both modules then see the same x
        ema.conv1.bias.zero_()
        a2.phi.weight.copy_(eye)
        a2.phi.bias.zero_()
        for conv in (a2.theta, a2.rho):
            conv.weight.copy_(proj)
            conv.bias.zero_()
    return ema.to(dtype).eval(), a2.to(dtype).eval()


def _compare(
    x: torch.Tensor, bases: int, temperature: float, gather: str, dtype: torch.dtype, seed: int
) -> tuple[float, float]:
    """(max abs diff, relative Frobenius diff) of EMA's x~ against A^2's Z."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # the same bases mu0 for every comparison
        ema, a2 = _paired_modules(x.shape[1], bases, temperature, gather, dtype)
    with torch.no_grad():
        xd = x.to(dtype)
        rec = ema.reconstruct(xd).double()  # (B, C, H, W)
        ctx = a2.context(xd).double()  # (B, C, H, W)
    diff = rec - ctx
    return diff.abs().max().item(), (diff.norm() / ctx.norm()).item()


def measure_equivalence(
    channels: int = 16,
    bases: int = 8,
    height: int = 9,
    width: int = 11,
    batch: int = 2,
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES,
    seed: int = 0,
) -> dict:
    """Figures of the EMA / A^2 comparison on a random input.

    Returns {"settings": {...}, "exact": {dtype: {"max_abs_diff", "rel_diff"}},
    "softmax_gap": {temperature: ||EMA - A2_softmax|| / ||A2_softmax||}} (gap in float64).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=gen, dtype=torch.float64)
    exact = {}
    for name, dtype in (("float64", torch.float64), ("float32", torch.float32)):
        max_abs, rel = _compare(x, bases, 1.0, "responsibility", dtype, seed)
        exact[name] = {"max_abs_diff": max_abs, "rel_diff": rel}
    gap = {
        float(t): _compare(x, bases, float(t), "softmax", torch.float64, seed)[1]
        for t in temperatures
    }
    settings = {
        "channels": channels,
        "bases": bases,
        "height": height,
        "width": width,
        "batch": batch,
        "seed": seed,
        "torch": torch.__version__,
        "device": "cpu",
    }
    return {"settings": settings, "exact": exact, "softmax_gap": gap}


def tidy_rows(result: dict) -> list[dict[str, object]]:
    """measure_equivalence's figures in long format: quantity, dtype, temperature, value."""
    rows: list[dict[str, object]] = []
    for dtype, figures in result["exact"].items():
        for key, value in figures.items():
            rows.append(
                {"quantity": f"exact_{key}", "dtype": dtype, "temperature": 1.0, "value": value}
            )
    for t, value in result["softmax_gap"].items():
        rows.append(
            {"quantity": "softmax_rel_gap", "dtype": "float64", "temperature": t, "value": value}
        )
    return rows


# The trained heads' figures, in table order; a probe also has the long-range ones.
RUN_METRICS = {"mIoU": "mIoU", "long_range_mIoU": "long-range mIoU", "engagement": "engagement"}


def _runs_table(paths: Sequence[pathlib.Path]) -> list[str]:
    """The a2 and ema heads as trained (no eval sweep) from each runs.csv: mean ± std."""
    import pandas as pd

    frames, lines = [], []
    for path in paths:
        if path.is_file():
            frames.append(load_runs(path)[0])
        else:
            lines.append(f"No runs found at `{path}`.")
    if not frames:
        return lines
    runs = pd.concat(frames, ignore_index=True)
    sel = runs[
        runs["metric"].isin(list(RUN_METRICS))
        & runs["module"].isin(["a2", "ema"])
        & (runs["setting"] == "")
    ]
    if sel.empty:
        return [*lines, "No a2 or ema mIoU rows in " + ", ".join(f"`{p}`" for p in paths) + "."]
    stats = sel.groupby(["experiment", "module", "head", "metric"], sort=False)["value"].agg(
        ["mean", "std", "count"]
    )
    lines += [
        "The a2 and ema heads, mean ± std over seeds, each evaluated with the stages it was "
        "trained with (the T x T' grid is in results/ema_stages/); mIoU in %, engagement = "
        "||module(x) - x|| / ||x||. Compare rows across experiments only when their recipes "
        "agree.",
        "",
    ]
    rows = []
    for (experiment, module, head), group in stats.groupby(level=[0, 1, 2], sort=False):
        cells = {m: group.xs(m, level="metric") for m in group.index.get_level_values("metric")}
        figures = [
            _mean_std(cells[m].iloc[0], 3 if m == "engagement" else 2) if m in cells else "–"
            for m in RUN_METRICS
        ]
        rows.append([experiment, module, head, *figures, int(cells["mIoU"].iloc[0]["count"])])
    header = ["experiment", "module", "head", *RUN_METRICS.values(), "seeds"]
    return [*lines, md_table(header, rows)]


def _mean_std(row, digits: int) -> str:
    std = "n/a" if math.isnan(row["std"]) else f"{row['std']:.{digits}f}"
    return f"{row['mean']:.{digits}f} ± {std}"


def _plot(result: dict, path: pathlib.Path) -> None:
    from ..figures import plt, save_figure

    temps = sorted(result["softmax_gap"])
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(temps, [result["softmax_gap"][t] for t in temps], "o-", label="softmax gather")
    exact = result["exact"]["float64"]["rel_diff"]
    if exact > 0:
        ax.axhline(exact, ls="--", color="gray", label="responsibility gather (exact form)")
    ax.set_xlabel(r"temperature $\lambda$")
    ax.set_ylabel("||EMA - A2|| / ||A2||")
    ax.set_title("EMA (1 stage) vs A2, float64")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def write_equivalence_report(
    out_dir: pathlib.Path, runs_csvs: Sequence[pathlib.Path] = ()
) -> pathlib.Path:
    """Write equivalence.md, .csv and .png into out_dir; returns the .md path."""
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result = measure_equivalence()
    rows = tidy_rows(result)
    frame = pd.DataFrame(rows, columns=list(CSV_COLUMNS), dtype=object)  # floats in full
    atomic_write_text(out_dir / "equivalence.csv", frame.to_csv(index=False, lineterminator="\n"))
    _plot(result, out_dir / "equivalence.png")

    s = result["settings"]
    lines = [
        "# EM attention vs double attention",
        "",
        f"torch {s['torch']}, device {s['device']}, dtype float64 (exact check also float32), "
        f"seed {s['seed']}; x: ({s['batch']}, {s['channels']}, {s['height']}, {s['width']}), "
        f"K = {s['bases']} bases.",
        "",
        "EMA: one stage, no L2 norm, temperature 1. A2: A = identity, theta = rho = mu0^T, "
        "no bias, responsibility gather. Both reconstructions from the modules.",
        "",
    ]
    exact = [
        [dtype, f"{fig['max_abs_diff']:.3e}", f"{fig['rel_diff']:.3e}"]
        for dtype, fig in result["exact"].items()
    ]
    lines += [md_table(["dtype", "max abs diff", "relative diff"], exact)]
    lines += [
        "",
        "Paper's gather (softmax over positions), the temperature lambda applied to both maps:",
        "",
    ]
    gaps = [[f"{t:g}", f"{value:.3e}"] for t, value in result["softmax_gap"].items()]
    lines += [md_table(["temperature", "‖EMA − A2‖ / ‖A2‖"], gaps)]
    lines += ["", "![gap vs temperature](equivalence.png)", ""]
    if runs_csvs:
        lines += ["## Trained heads", "", *_runs_table([pathlib.Path(p) for p in runs_csvs]), ""]
    md = out_dir / "equivalence.md"
    atomic_write_text(md, "\n".join(lines))
    return md


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        default="runs/equivalence",
        help="directory for equivalence.{md,csv,png} (the record: results/equivalence)",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        default=list(DEFAULT_RUNS),
        metavar="CSV",
        help="runs.csv files whose a2/ema mIoU to tabulate (a missing one is noted)",
    )


def command(args: argparse.Namespace) -> int:
    md = write_equivalence_report(pathlib.Path(args.out), [pathlib.Path(p) for p in args.runs])
    print(f"wrote {md}")
    return 0
