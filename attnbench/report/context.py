"""What the report says beside its numbers: the machine and code (from each run's
env.json), the experiment's config.yaml, and what the cost figures measure (from
runs.csv's text rows)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from ..experiment.layout import run_folders
from ..files import read_json
from ..measure.head_costs import memory_meaning


def read_environment(*exp_dirs: Path) -> dict[str, str]:
    """device, torch, threads, git_commit: the distinct values in runs/*/seed*/env.json of
    every folder given, in order."""
    runs = [run for exp_dir in exp_dirs for run in run_folders(exp_dir)]
    envs = [e for run in runs if isinstance(e := read_json(run.env), dict)]
    found = {"env_files": str(len(envs))}
    for key in ("device", "torch", "threads", "git_commit"):
        values = []
        for env in envs:
            value = env.get(key)
            if key == "git_commit" and value:
                value = f"{value[:12]}{'-dirty' if value.endswith('-dirty') else ''}"
            if key == "device" and env.get("device_name"):
                value = f"{value} ({env['device_name']})"
            if key == "device" and env.get("amp_dtype"):
                value = f"{value}, {env['amp_dtype']} autocast"
            values.append(None if value is None else str(value))
        values = list(dict.fromkeys(v for v in values if v is not None))
        found[key] = " / ".join(values) if values else "not recorded"
    return found


def suite_environment(suite_dir: Path, probes: list[str]) -> dict[str, str]:
    """read_environment over every probe folder of a suite (a suite's probes may have been
    recorded by different commits or machines)."""
    return read_environment(*(Path(suite_dir) / probe for probe in probes))


def cost_context(text: pd.DataFrame) -> tuple[dict[str, str], list[str]]:
    """({head: memory_kind}, distinct MAC-count image sizes) from runs.csv's text rows."""
    kinds = text[text["metric"] == "memory_kind"]
    sizes = text.loc[text["metric"] == "cost_image_size", "value"]
    found = dict(zip(kinds["head"], kinds["value"], strict=True))
    return found, list(dict.fromkeys(v.replace("x", "×") for v in sizes))


def describe_memory_kind(kind: str) -> str:
    """The kind's label with what it measures, when known."""
    meaning = memory_meaning(kind)
    return f"`{kind}` ({meaning})" if meaning else f"`{kind}`"


def read_experiment_config(exp_dir: Path) -> dict:
    """The resolved config.yaml as a plain dict (context only), or {} when absent or broken."""
    path = exp_dir / "config.yaml"
    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        raw = None
    return raw if isinstance(raw, dict) else {}


def context_lines(
    runs: pd.DataFrame, env: dict[str, str], config: dict, sizes: list[str]
) -> list[str]:
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    lines = [
        f"- device: {env['device']}; torch: {env['torch']}; threads: {env['threads']}"
        + ("" if env["env_files"] != "0" else " (no runs/*/seed*/env.json found)"),
        f"- seeds: {', '.join(map(str, seeds))}; code: git {env['git_commit']}",
    ]
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    if not sizes and data:
        generated = data.get("dataset", "synthetic") in ("synthetic", "probe")
        key = "image_size" if generated else "crop_size"
        value = data.get(key)
        if value:
            side = value if isinstance(value, list) else [value]
            sizes = [f"{side[0]}×{side[-1]}"]
    dataset = f"data: {data.get('dataset', 'synthetic')}; " if data else ""
    if sizes:
        lines.append(f"- {dataset}MACs counted per image at {' / '.join(sizes)}")
    else:
        lines.append(f"- {dataset}resolution of the MAC counts: not recorded")
    return lines


def probe_recipe(config: dict) -> str:
    """The training recipe and model of a probe experiment's config.yaml, in one line: what
    a reader needs to tell two suites' tables and figures apart."""
    train, data = config.get("train", {}), config.get("data", {})
    backbone = config.get("model", {}).get("backbone", {})
    head = config.get("model", {}).get("head", {})
    return (
        f"{train.get('iterations', '?')} iterations of batch {train.get('batch_size', '?')} "
        f"at lr {train.get('lr', '?')}; {data.get('image_size', '?')} px images; "
        f"ResNet-{backbone.get('depth', '?')} of width {backbone.get('width', '?')}, "
        f"stem + {backbone.get('stages', '?')} stages; head {head.get('channels', '?')} channels"
    )
