"""`python -m attnbench profile`: MACs, parameters, memory and latency of every module,
alone and inside the shared head, at the papers' settings and over a resolution sweep.

Paper settings: the head takes a 2048-channel backbone feature and uses C = 512 at
65 x 65 and 97 x 97 (513 and 769 crops at output stride 8), 21 classes; the module
alone runs on (1, 512, 97, 97). Each module at its defaults, plus CCNet with one
criss-cross pass (recurrence=1). The sweep runs each module alone on (1, 512, s, s)
for growing s and stops before a size whose predicted forward time exceeds
--sweep-max-seconds or whose predicted memory exceeds --sweep-max-memory-mb
(predictions extrapolate the last measured size by the formula's MAC ratio and by
the memory's measured growth; quadratic growth is assumed until two sizes exist).

Outputs (each written atomically, rewritten after every case so an interrupted run
keeps its finished rows), under --out, named for the device on a GPU
(e.g. paper_cuda_<device>.csv): by default runs/profile/ (git-ignored; maintainers
rebuild the committed record with --out results/profile); --quick writes under
runs/profile-quick/ unless --out says otherwise, and never into results/profile/.
--replot redraws the figures from the sweep CSVs already there:
  paper.csv, paper.md      tidy rows: scope, module, setting, batch, channels,
                           height, width, metric, value, unit, method, device,
                           device_name, dtype, torch, threads
  sweep.csv                the same columns, module scope only
  sweep_fit.csv, .md       growth exponents against N = H x W, measured and formula
  sweep_macs.png, sweep_memory.png, sweep_latency.png   log-log, per module
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

import modules

from ..env import REPO_ROOT, device_name, resolve_device
from ..errors import UserError
from ..files import atomic_write_text
from ..measure.memory import DESCRIPTIONS
from ..measure.timing import matmul_rate
from .cases import Budget, Case, Measured, RunEnv, measure_case, measure_sweep_point, row
from .report import fit_exponents, fit_markdown, formula_limit, paper_markdown, plot_sweep

PAPER = {"in_channels": 2048, "channels": 512, "head_sizes": (65, 97), "module_size": 97}
QUICK = {"in_channels": 48, "channels": 32, "head_sizes": (9,), "module_size": 13}
SWEEP_SIZES = (16, 24, 32, 48, 64, 96, 128)
QUICK_SWEEP_SIZES = (6, 8, 12)
EXTRA_SETTINGS = {"ccnet": [(("recurrence", 1),)]}
RECORD = Path("results/profile")  # committed: the paper-size profile of the record
PAPER_OUT = Path("runs/profile")  # git-ignored: a user's paper-size profile
QUICK_OUT = Path("runs/profile-quick")  # git-ignored: tiny sizes, for tests and trials


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out",
        type=Path,
        help=f"output folder (default {PAPER_OUT}/, --quick {QUICK_OUT}/; the record: {RECORD})",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="auto: CUDA when available",
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "float16", "bfloat16"],
        default="float32",
        help="half types on CUDA only; MACs are counted in float32 either way",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    p.add_argument("--modules", nargs="+", metavar="NAME", help="default: all registered")
    p.add_argument(
        "--parts",
        nargs="+",
        choices=["paper", "sweep"],
        default=["paper", "sweep"],
        help="paper settings table, resolution sweep, or both",
    )
    p.add_argument(
        "--sweep-sizes",
        type=int,
        nargs="+",
        metavar="S",
        help=f"square feature sizes s x s (default {' '.join(map(str, SWEEP_SIZES))})",
    )
    p.add_argument(
        "--budget", type=float, default=1.0, help="seconds per latency figure (at least 3 samples)"
    )
    p.add_argument(
        "--sweep-max-seconds",
        type=float,
        default=2.0,
        help="stop a module's sweep before a forward predicted to take longer",
    )
    p.add_argument(
        "--sweep-max-memory-mb",
        type=float,
        default=4096.0,
        help="stop a module's sweep before a size predicted to need more memory",
    )
    p.add_argument("--num-classes", type=int, default=21, help="head classes (VOC: 21)")
    p.add_argument(
        "--quick",
        action="store_true",
        help=f"tiny sizes and budgets (for tests): C=32, 6-13 px; never into {RECORD}/",
    )
    p.add_argument(
        "--replot",
        action="store_true",
        help="redraw the sweep figures from the sweep CSVs in --out; measure nothing",
    )


def output_folder(out: Path | None, quick: bool) -> Path:
    """--out, or the default for the mode; a quick profile may not overwrite the paper one."""
    if out is None:
        return QUICK_OUT if quick else PAPER_OUT
    committed = {RECORD.resolve(), (REPO_ROOT / RECORD).resolve()}
    if quick and out.resolve() in committed:
        raise UserError(
            f"--out {out}: --quick measures tiny sizes and would overwrite the committed "
            f"paper-size profile there; leave --out out (writes {QUICK_OUT}/) or choose another"
        )
    return out


def command(args: argparse.Namespace) -> int:
    out = output_folder(args.out, args.quick)
    if args.replot:
        return replot(out)
    env = _run_env(args)
    names = _module_names(args.modules)
    sizes = PAPER if not args.quick else QUICK
    budget = Budget(args.budget) if not args.quick else Budget(0.02, 2, 5)
    suffix = "" if env.device.type == "cpu" else f"_{env.slug}"
    suffix += "" if env.dtype == torch.float32 else f"_{env.dtype_name}"
    out.mkdir(parents=True, exist_ok=True)

    paper_cases = _paper_cases(names, sizes, args.num_classes) if "paper" in args.parts else []
    sweep_sizes = tuple(args.sweep_sizes or (QUICK_SWEEP_SIZES if args.quick else SWEEP_SIZES))
    sweep_on = "sweep" in args.parts
    total = len(paper_cases) + (len(names) * len(sweep_sizes) if sweep_on else 0) + 1
    with tqdm(total=total, desc="profile", unit="case", disable=None) as bar:
        bar.set_postfix_str("dense matmul rate")
        size = 256 if args.quick else 2048
        rate, numerics = matmul_rate(env.device, env.dtype, size=size, budget_s=budget.seconds)
        bar.write(f"dense matmul reference ({size}^3, {numerics}): {rate / 1e9:,.1f} GMACs/s")
        bar.update()
        if paper_cases:
            _run_paper(paper_cases, env, budget, (size, rate, numerics), out, suffix, bar)
        if sweep_on:
            limits = {n: formula_limit(modules.build(n, sizes["channels"]).macs) for n in names}
            caps = (args.sweep_max_seconds, args.sweep_max_memory_mb)
            plan = (names, sweep_sizes, sizes["channels"], caps, limits)
            _run_sweep(plan, env, budget, out, suffix, bar)
    print(f"profile: wrote {out}/ (device {env.device_name}, {env.dtype_name})")
    return 0


def replot(out: Path) -> int:
    """Redraw every sweep's figures from its CSV (sweep.csv, sweep_cuda_<device>.csv, ...)."""
    tables = sorted(p for p in out.glob("sweep*.csv") if not p.name.startswith("sweep_fit"))
    if not tables:
        raise UserError(f"--replot: no sweep*.csv in {out}/; run the profile first")
    for table in tables:
        sweep = pd.read_csv(table, keep_default_na=False)  # keeps the module "none" a string
        written = plot_sweep(sweep, out, table.stem.removeprefix("sweep"))
        print(f"profile: redrew {', '.join(str(p) for p in written)} from {table}")
    return 0


def _run_env(args: argparse.Namespace) -> RunEnv:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device, key="--device")
    dtype = getattr(torch, args.dtype)
    if device.type == "cpu" and dtype != torch.float32:
        raise UserError(f"--dtype {args.dtype}: the CPU profile runs in float32 only")
    return RunEnv(device, dtype, device_name(device), torch.get_num_threads())


def _module_names(chosen: list[str] | None) -> list[str]:
    valid = modules.available()
    if not chosen:
        return valid
    unknown = [n for n in chosen if n not in valid]
    if unknown:
        raise UserError(f"--modules: unknown {', '.join(unknown)}; valid: {', '.join(valid)}")
    return list(dict.fromkeys(chosen))


def _paper_cases(names: list[str], sizes: dict[str, Any], num_classes: int) -> list[Case]:
    cases = []
    c, cin = sizes["channels"], sizes["in_channels"]
    for name in names:
        for params in [(), *EXTRA_SETTINGS.get(name, [])]:
            s = sizes["module_size"]
            cases.append(Case("module", name, s, s, c, params))
    for s in sizes["head_sizes"]:
        for name in names:
            for params in [(), *EXTRA_SETTINGS.get(name, [])]:
                cases.append(Case("head", name, s, s, c, params, cin, num_classes))
    return cases


def _write_csv(rows: list[dict[str, Any]], path: Path) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_text(path, buffer.getvalue())
    return frame


def _run_paper(
    cases: list[Case],
    env: RunEnv,
    budget: Budget,
    matmul: tuple[int, float, str],
    out: Path,
    suffix: str,
    bar: tqdm,
) -> None:
    size, rate, numerics = matmul
    device_case = Case("device", "matmul", size, size, size)
    path = out / f"paper{suffix}.csv"
    done = _finished_cases(path, cases, env)
    if done:
        # Resume: the earlier run's rows (same device, dtype, torch, threads) are kept, with
        # its matmul rate, so every '% of peak' figure keeps referring to one measurement.
        # A table cut before its matmul row (edited by hand) keeps this run's rate instead.
        earlier = next((r for r in _read_rows(path) if r["metric"] == "matmul_macs_per_s"), None)
        if earlier is not None:
            rate = earlier["value"]
            numerics = earlier["method"].removeprefix("square matmul, median; ")
    method = f"square matmul, median; {numerics}"
    rows = [row(device_case, env, "matmul_macs_per_s", rate, "MACs/s", method)]
    rows += [r for kept in done.values() for r in kept]
    unsupported: dict[str, dict[str, int]] = {}
    kinds: dict[str, str] = {}
    for label, kept in done.items():
        count = sum(int(r["value"]) for r in kept if r["metric"] == "unsupported_ops")
        unsupported[label] = {"ops counted in the earlier run": count} if count else {}
        kinds.update(_memory_kinds(Measured(rows=kept)))
    for case in cases:
        if case.label in done:
            bar.update()
            continue
        bar.set_postfix_str(case.label)
        measured = measure_case(case, env, budget)
        rows += measured.rows
        unsupported[case.label] = measured.unsupported
        kinds.update(_memory_kinds(measured))
        frame = _write_csv(rows, out / f"paper{suffix}.csv")
        atomic_write_text(out / f"paper{suffix}.md", paper_markdown(frame, kinds, unsupported))
        bar.update()


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        return pd.read_csv(path, keep_default_na=False).to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError):
        return []


def _finished_cases(path: Path, cases: list[Case], env: RunEnv) -> dict[str, list[dict[str, Any]]]:
    """Rows of an earlier run of the same cases on the same machine settings, by case label.

    A case counts as finished when its last metric (the training rate) is there; a killed
    profile so restarts where it stopped instead of measuring everything again.
    """
    rows = _read_rows(path)
    same = ("device", "device_name", "dtype", "torch", "threads")
    here = row(cases[0], env, "", 0.0, "", "") if cases else {}
    if not rows or any(str(rows[0][k]) != str(here[k]) for k in same):
        return {}
    by_label: dict[str, list[dict[str, Any]]] = {}
    for case in cases:
        mine = [
            r
            for r in rows
            if (r["scope"], r["module"], str(r["setting"]), int(r["height"]), int(r["width"]))
            == (case.scope, case.module, case.setting, case.height, case.width)
        ]
        if any(r["metric"] == "macs_per_s_train" for r in mine):
            by_label[case.label] = mine
    return by_label


def _memory_kinds(measured: Measured) -> dict[str, str]:
    kinds = {}
    for r in measured.rows:
        if r["unit"] == "MB":
            kind = r["method"].split(";")[0]
            kinds[kind] = DESCRIPTIONS.get(kind, kind)
    return kinds


def _run_sweep(
    plan: tuple[list[str], tuple[int, ...], int, tuple[float, float], dict[str, float]],
    env: RunEnv,
    budget: Budget,
    out: Path,
    suffix: str,
    bar: tqdm,
) -> None:
    names, sizes, channels, caps, limits = plan
    rows: list[dict[str, Any]] = []
    notes = [
        f"Caps: stop before a size whose predicted forward exceeds {caps[0]:g} s or whose "
        f"predicted memory exceeds {caps[1]:g} MB.",
    ]
    for name in names:
        formula = modules.build(name, channels).macs
        last: list[tuple[int, float, float]] = []  # (N, forward seconds, memory MB)
        for s in sorted(sizes):
            reason = _over_cap(last, s * s, formula, caps) if last else None
            if reason:
                notes.append(f"{name}: stopped before {s}x{s}: {reason}.")
                bar.update(sum(1 for t in sizes if t >= s))
                break
            bar.set_postfix_str(f"sweep:{name}@{s}x{s}")
            measured = measure_sweep_point(Case("module", name, s, s, channels), env, budget)
            rows += measured.rows
            values = {r["metric"]: r["value"] for r in measured.rows}
            memory = max(values.get(k, 0.0) for k in ("mem_infer_mb", "mem_saved_mb"))
            last.append((s * s, values["lat_infer_ms"] / 1e3, memory))
            _write_csv(rows, out / f"sweep{suffix}.csv")
            bar.update()
    sweep = pd.DataFrame(rows)
    kinds = _memory_kinds(Measured(rows))
    notes.append("Memory: " + "; ".join(f"{k}: {v}" for k, v in kinds.items()) + ".")
    fits = fit_exponents(sweep, limits)
    _write_csv(fits.to_dict("records"), out / f"sweep_fit{suffix}.csv")
    atomic_write_text(out / f"sweep_fit{suffix}.md", fit_markdown(fits, sweep, notes))
    plot_sweep(sweep, out, suffix)


def _over_cap(
    last: list[tuple[int, float, float]],
    n: int,
    formula: Callable[[int, int], int],
    caps: tuple[float, float],
) -> str | None:
    """Why the next size would break a cap, or None. Extrapolates the last point."""
    n0, seconds, memory = last[-1]
    side0, side = math.isqrt(n0), math.isqrt(n)
    m0, m1 = formula(side0, side0), formula(side, side)
    time_ratio = m1 / m0 if m0 > 0 else n / n0
    if len(last) >= 2 and last[-2][2] > 0 and memory > 0:
        growth = math.log(memory / last[-2][2]) / math.log(n0 / last[-2][0])
        growth = min(max(growth, 1.0), 2.0)
    else:
        growth = 2.0
    predicted_s = seconds * time_ratio
    predicted_mb = memory * (n / n0) ** growth
    if seconds > caps[0] or predicted_s > caps[0]:
        return f"predicted forward {predicted_s:.2f} s > {caps[0]:g} s"
    if predicted_mb > caps[1]:
        return f"predicted memory {predicted_mb:.0f} MB > {caps[1]:g} MB"
    return None
