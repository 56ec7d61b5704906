"""The capability table of a probe suite: probe x head, what each module buys and why.

A suite (an experiment with `probes:`) keeps one experiment per probe under
results/<suite>/<probe>/, each with its own runs.csv and curves.csv. From those alone
this writes results/<suite>/capability.csv, summary.md (the table first), engagement.png
and knockout.png.

Per probe and head: the long-range mIoU (mean ± 95% t half-width over seeds), its
difference to `none` paired by seed, the module's final engagement
(||module(x) - x|| / ||x||) and, for a module with gates, its gate effect (the part of
that change which passes through the gates, train/diagnostics.py), and the long-range
mIoU with the module knocked out. The verdict reads them together:

    solves          its 95% interval lies wholly above that of `none` (disjoint)
    gate closed     not solved, and the gate effect (engagement where none was
                    recorded: a module without gates, or an older record) below
                    GATE_CLOSED: the module never switched its context on, so the run
                    cannot say whether it could have
    not separated   engaged, its mean above the interval of `none`, but the two
                    intervals overlap: the seeds disagree; more of them would tell
    no gain         engaged, and its mean within the interval of `none` or below
    one seed        engaged, but a single seed has no interval to compare
    (baseline)      `none` itself

A probe counts only when at least one head solves it: a probe nobody solves measures
nothing.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..data.probes import local_chance_iou
from ..errors import UserError
from ..figures import plt, save_figure
from ..files import atomic_write_text
from .plots import add_caption
from .stats import Interval, load_curves, load_runs, mean_interval, paired_difference

GATE_CLOSED = 0.05  # below this, the module (or its gated path) hardly changes its input
BASELINE = "none"


def _per_seed(runs: pd.DataFrame, head: str, metric: str, setting: str = "") -> dict[int, float]:
    rows = runs[(runs["head"] == head) & (runs["metric"] == metric) & (runs["setting"] == setting)]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows["value"], strict=True)}


def probe_rows(probe: str, runs: pd.DataFrame) -> list[dict]:
    """One capability row per head of one probe's runs.csv."""
    heads = list(dict.fromkeys(runs["head"]))
    base = _per_seed(runs, BASELINE, "long_range_mIoU")
    base_interval = mean_interval(base.values())
    rows = []
    for head in heads:
        scores = _per_seed(runs, head, "long_range_mIoU")
        if not scores:
            continue
        value = mean_interval(scores.values())
        delta = paired_difference(scores, base) if head != BASELINE and base else None
        engaged = mean_interval(_per_seed(runs, head, "engagement").values())
        gated = mean_interval(_per_seed(runs, head, "gate_effect").values())
        knocked = mean_interval(_per_seed(runs, head, "long_range_mIoU", "knockout").values())
        gate = _per_seed(runs, head, "gate_open")
        support = mean_interval(_per_seed(runs, head, "receptive_field_px").values())
        effective = mean_interval(_per_seed(runs, head, "effective_receptive_field_px").values())
        rows.append(
            {
                "probe": probe,
                "head": head,
                "module": runs.loc[runs["head"] == head, "module"].iloc[0],
                "gate": "open" if any(gate.values()) else "paper",
                "seeds": value.n,
                "long_range_mean": value.mean,
                "long_range_ci": value.half_width,
                "delta_mean": delta.mean if delta else float("nan"),
                "delta_ci": delta.half_width if delta else float("nan"),
                "engagement": engaged.mean,
                "gate_effect": gated.mean if gated.n else float("nan"),
                "knockout_mean": knocked.mean,
                "receptive_field_px": support.mean,
                "effective_receptive_field_px": effective.mean,
                "verdict": _verdict(head, value, base_interval, gated if gated.n else engaged),
            }
        )
    return rows


def _verdict(head: str, value: Interval, base: Interval, switched: Interval) -> str:
    """`switched`: the gate effect over seeds, or the engagement where it is not recorded."""
    if head == BASELINE:
        return "(baseline)"
    if value.n >= 2 and base.n >= 2 and value.low > base.high:
        return "solves"
    if value.n < 2 and not switched.mean < GATE_CLOSED:
        return "one seed: no interval"
    if switched.mean == switched.mean and switched.mean < GATE_CLOSED:
        return "gate closed"
    if base.n >= 2 and value.mean > base.high:
        return "not separated"
    return "no gain"


def suite_probes(suite_dir: Path) -> list[str]:
    """The probes of a suite folder: its sub-folders that hold a runs.csv."""
    return sorted(p.parent.name for p in Path(suite_dir).glob("*/runs.csv"))


def capability_table(suite_dir: Path) -> pd.DataFrame:
    probes = suite_probes(suite_dir)
    if not probes:
        raise UserError(f"{suite_dir}: no <probe>/runs.csv below it; run the probe suite first")
    rows = []
    for probe in probes:
        runs, _ = load_runs(Path(suite_dir) / probe / "runs.csv")
        rows += probe_rows(probe, runs)
    return pd.DataFrame(rows)


def _pm(mean: float, half: float) -> str:
    if mean != mean:
        return "–"
    return f"{mean:.1f}" if half != half else f"{mean:.1f} ± {half:.1f}"


def _engagement(engagement: float, gate_effect: float) -> str:
    if engagement != engagement:
        return "–"
    through = "" if gate_effect != gate_effect else f" ({gate_effect:.3f})"
    return f"{engagement:.3f}{through}"


def _field(r: object) -> str:
    support, effective = r.receptive_field_px, r.effective_receptive_field_px
    return "–" if support != support else f"{support:.0f} / {effective:.0f}"


def render_markdown(table: pd.DataFrame, context: list[str]) -> str:
    chance = 100 * local_chance_iou()
    lines = ["# Capability table", "", *[f"- {c}" for c in context], ""]
    columns = ["probe", "head", "gate", "seeds", "long-range mIoU", "Δ vs `none`"]
    columns += ["engagement (gates)", "knocked out", "receptive field (px)", "verdict"]
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in table.itertuples(index=False):
        cells = [r.probe, r.head, r.gate, str(r.seeds), _pm(r.long_range_mean, r.long_range_ci)]
        cells.append("baseline" if r.head == BASELINE else _pm(r.delta_mean, r.delta_ci))
        cells.append(_engagement(r.engagement, r.gate_effect))
        cells += [_pm(r.knockout_mean, float("nan")), _field(r), r.verdict]
        lines.append("| " + " | ".join(cells) + " |")
    counted = table[table["verdict"] == "solves"].groupby("probe")["head"].apply(list)
    lines += [
        "",
        f"Long-range mIoU: mean IoU (%) over the classes a local network cannot tell apart "
        f"(every class but background); a network that sees no context scores at most "
        f"{chance:.1f} in expectation (data/probes.py). ± is the half-width of the 95% "
        f"Student-t interval over seeds; Δ is paired by seed; a head solves a probe when its "
        f"interval lies wholly above that of `none`, and is not separated when its mean is "
        f"above that interval but the two overlap (the seeds disagree). Engagement: "
        f"||module(x) − x|| / ||x|| on validation images at the end of training, and in "
        f"brackets, for a module with zero-initialised gates, the part that passes through "
        f"them (||module(x) − module with its gates at 0 (x)|| / ||x||; DANet changes its "
        f"input outside its gates too); below {GATE_CLOSED} the module, or its gated path, "
        f"has hardly switched on. Knocked out: the long-range mIoU "
        f"with the module replaced by the identity at evaluation. Receptive field: how far "
        f"from a pixel the trained head's prediction reaches (the gradient's support) / "
        f"where 95% of its gradient lies (the effective field), mean over seeds.",
        "",
    ]
    for probe in dict.fromkeys(table["probe"]):
        solved = counted.get(probe, [])
        lines.append(
            f"- {probe}: solved by {', '.join(solved)}."
            if solved
            else f"- {probe}: no head separates from `none`, so this probe measures nothing here."
        )
    return "\n".join(lines) + "\n"


def plot_engagement(
    suite_dir: Path, probes: list[str], path: Path, caption: str = ""
) -> Path | None:
    """Against iteration, mean over seeds, one panel per probe: each head's gate effect
    where it was recorded (a module with gates), its engagement otherwise."""
    curves = [(p, load_curves(Path(suite_dir) / p / "curves.csv")) for p in probes]
    curves = [(p, _switch_curves(c)) for p, c in curves if c is not None]
    curves = [(p, c) for p, c in curves if not c.empty]
    if not curves:
        return None
    colours = head_colours(list(dict.fromkeys(h for _, c in curves for h in c["head"])))
    fig, axes = plt.subplots(1, len(curves), figsize=(5.2 * len(curves) + 1.6, 4), squeeze=False)
    for ax, (probe, data) in zip(axes[0], curves, strict=True):
        for head, rows in data.groupby("head", sort=False):
            mean = rows.groupby("iteration")["value"].mean()
            ax.plot(mean.index, mean.values, "o-", markersize=3, label=head, color=colours[head])
        ax.axhline(GATE_CLOSED, color="grey", linestyle=":", linewidth=1,
                   label=f"{GATE_CLOSED}: below, the gate is closed")  # fmt: skip
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_ylim(bottom=0)  # a ratio of norms: nothing below 0 to show
        ax.set_xlim(left=0)
        ax.set_title(f"{probe}: engagement over training")
        ax.set_xlabel("iteration")
        ax.set_ylabel("gate effect, or engagement (no gates)\nmean over seeds")
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    add_caption(fig, caption)
    return save_figure(fig, path)


def head_colours(heads: list[str]) -> dict[str, tuple]:
    """One colour a head. A head named `<x>-open` (the gate ablation's naming) takes the
    light shade of `<x>`'s colour, so each module's two settings read as a pair."""
    bases = list(dict.fromkeys(h.removesuffix("-open") for h in heads))
    pairs = plt.get_cmap("tab20").colors  # (dark, light) shades of 10 hues
    return {
        h: pairs[(2 * bases.index(h.removesuffix("-open")) + h.endswith("-open")) % 20]
        for h in heads
    }


def _switch_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """The gate-effect rows of the heads that have them, the engagement rows of the rest."""
    gated = set(curves.loc[curves["metric"] == "gate_effect", "head"])
    keep = (curves["metric"] == "gate_effect") | (
        (curves["metric"] == "engagement") & ~curves["head"].isin(gated)
    )
    return curves[keep]


def plot_knockout(table: pd.DataFrame, path: Path, caption: str = "") -> Path | None:
    """Long-range mIoU trained and with the module knocked out, per head, one panel per probe."""
    probes = list(dict.fromkeys(table["probe"]))
    if table["knockout_mean"].isna().all():
        return None
    chance = 100 * local_chance_iou()
    width = max(5.6, 1.5 + 0.5 * table.groupby("probe").size().max())  # room for each label
    fig, axes = plt.subplots(1, len(probes), figsize=(width * len(probes), 4.4), squeeze=False)
    for ax, probe in zip(axes[0], probes, strict=True):
        rows = table[table["probe"] == probe]
        x = range(len(rows))
        mean, half = rows["long_range_mean"], rows["long_range_ci"].fillna(0)  # 1 seed: none
        # An interval is drawn within the scale (mIoU lies in 0-100), so it stays on the axes.
        errors = [mean - (mean - half).clip(lower=0), (mean + half).clip(upper=100) - mean]
        ax.bar([i - 0.2 for i in x], mean, 0.4, yerr=errors, capsize=3,
               label="trained (± 95% CI, within 0-100)")  # fmt: skip
        ax.bar([i + 0.2 for i in x], rows["knockout_mean"], 0.4, label="module knocked out")
        ax.axhline(
            chance, color="grey", linestyle="--", linewidth=1, label=f"no context ({chance:.0f})"
        )
        ax.set_xticks(list(x), rows["head"], rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 100)
        ax.set_title(f"{probe}: long-range mIoU (%)", pad=24)
        # Above the axes, not over the bars.
        ax.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    fig.subplots_adjust(bottom=0.26, top=0.84)  # the rotated names above the caption
    add_caption(fig, caption)
    return save_figure(fig, path)


def build_capability_report(suite_dir: Path, context: list[str], caption: str = "") -> list[Path]:
    """capability.csv, summary.md, engagement.png and knockout.png under suite_dir; `caption`
    (the run context) goes under each figure."""
    suite_dir = Path(suite_dir)
    table = capability_table(suite_dir)
    written = [suite_dir / "capability.csv", suite_dir / "summary.md"]
    atomic_write_text(written[0], table.to_csv(index=False, float_format="%.4f"))
    text = render_markdown(table, context)
    figures = [
        plot_engagement(suite_dir, suite_probes(suite_dir), suite_dir / "engagement.png", caption),
        plot_knockout(table, suite_dir / "knockout.png", caption),
    ]
    for figure in figures:
        if figure is not None:
            text += f"\n![{figure.stem}]({figure.name})\n"
            written.append(figure)
    atomic_write_text(written[1], text)
    return written
