"""Attention-map figure: for a few validation images, the input, the label, and per head
its prediction and its context module's own map for a marked query pixel.

Unlike the tables, this needs the trained weights
(results/<exp>/runs/<head>/seed<k>/checkpoints/last.pt, not committed): without them
the figure is left as it is and the returned note says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import ListedColormap

from ..data.transforms import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ..experiment.config import ExperimentConfig, load_config
from ..figures import plt, save_figure
from ..files import read_json

# The map shown per head: the first of these keys that the module returns.
MAIN_MAPS = ("responsibilities", "attention", "position", "criss_cross", "long_range", "gather")
EMA_BASES_SHOWN = 8


@dataclass(frozen=True)
class HeadRun:
    head: str
    seed: int
    run_dir: Path
    checkpoint: Path


@dataclass
class HeadMaps:
    """One head's outputs per image: prediction (H, W) and main map (H, W) at image size."""

    run: HeadRun
    predictions: list[np.ndarray]
    maps: list[np.ndarray | None]
    map_title: str
    categorical: bool
    bases: list[np.ndarray] | None  # EMA: (K', H, W) first responsibilities per image


def _seed_of(path: Path) -> int:
    text = path.name.removeprefix("seed")
    return int(text) if text.isdigit() else 10**9


def find_checkpoints(exp_dir: Path, head_order: list[str] | None = None) -> list[HeadRun]:
    """Per head, the lowest finished seed with a checkpoint; in `head_order`, then by name."""
    found: dict[str, HeadRun] = {}
    for head_dir in sorted((exp_dir / "runs").glob("*")):
        for seed_dir in sorted(head_dir.glob("seed*"), key=_seed_of):
            ckpt = seed_dir / "checkpoints" / "last.pt"
            metrics = read_json(seed_dir / "metrics.json")
            finished = isinstance(metrics, dict) and metrics.get("status") == "finished"
            if finished and ckpt.is_file():
                found[head_dir.name] = HeadRun(head_dir.name, _seed_of(seed_dir), seed_dir, ckpt)
                break
    order = [h for h in head_order or [] if h in found]
    order += sorted(h for h in found if h not in order)
    return [found[h] for h in order]


def load_run_config(exp_dir: Path, run_dir: Path) -> ExperimentConfig:
    """The run's resolved config (else the experiment's), without the pretrained backbone:
    the checkpoint holds every weight, and the ImageNet file may not be on this machine."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        path = exp_dir / "config.yaml"
    return load_config(path, ["model.backbone.pretrained=null"])


def _data_api() -> tuple[Any, Any]:
    from ..data import build_dataset, dataset_info

    return build_dataset, dataset_info


def _model_api() -> Any:
    from ..model.segmenter import build_model

    return build_model


def choose_query(label: torch.Tensor) -> tuple[int, int]:
    """An object pixel near the objects' centroid, so the maps show what an object attends
    to; the image centre when the label has no object."""
    height, width = label.shape
    fg = (label != 0) & (label != IGNORE_INDEX)
    if not bool(fg.any()):
        return height // 2, width // 2
    rows, cols = torch.nonzero(fg, as_tuple=True)
    cy, cx = rows.float().mean(), cols.float().mean()
    nearest = int(torch.argmin((rows - cy) ** 2 + (cols - cx) ** 2))
    return int(rows[nearest]), int(cols[nearest])


def main_map(maps: dict[str, torch.Tensor]) -> tuple[torch.Tensor | None, str, bool]:
    """(map (h, w) of the first sample or None, its title, whether it is categorical)."""
    for key in MAIN_MAPS:
        if key in maps:
            value = maps[key]  # (B, M, h, w)
            if key == "responsibilities":
                return value[0].argmax(0).float(), "argmax of z", True
            suffix = " (ch. 0)" if value.shape[1] > 1 else ""
            return value[0, 0].float(), f"{key}{suffix}", False
    for key, value in maps.items():
        if value.dim() == 4:
            return value[0, 0].float(), key, False
    return None, "no map", False


def _to_image(map2d: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    # Nearest keeps each feature cell's weight visible instead of smearing it.
    up = F.interpolate(map2d[None, None].float().cpu(), size=size, mode="nearest")
    return up[0, 0].numpy()


def _feature_query(query: tuple[int, int], image: tuple[int, int], feature: tuple[int, int]):
    return (
        min(feature[0] - 1, query[0] * feature[0] // image[0]),
        min(feature[1] - 1, query[1] * feature[1] // image[1]),
    )


@torch.inference_mode()
def head_maps(model: torch.nn.Module, run: HeadRun, samples: list, queries: list) -> HeadMaps:
    """Run one trained model on the samples and collect its prediction and maps."""
    context = model.head.context
    device = next(model.parameters()).device
    captured: dict[str, torch.Tensor] = {}
    hook = context.register_forward_pre_hook(lambda _m, args: captured.__setitem__("x", args[0]))
    result = HeadMaps(run, [], [], "no map", False, None)
    try:
        for (image, _label), query in zip(samples, queries, strict=True):
            size = tuple(image.shape[-2:])
            logits = model(image[None].to(device))["out"]  # (1, classes, H, W)
            result.predictions.append(logits.argmax(1)[0].cpu().numpy())
            feature = captured["x"]  # (1, C, h, w)
            maps = context.attention_maps(feature, _feature_query(query, size, feature.shape[-2:]))
            chosen, result.map_title, result.categorical = main_map(maps)
            result.maps.append(None if chosen is None else _to_image(chosen, size))
            if "responsibilities" in maps:
                z = maps["responsibilities"][0, :EMA_BASES_SHOWN]  # (K', h, w)
                up = F.interpolate(z[None].float().cpu(), size=size, mode="nearest")[0]
                result.bases = [*(result.bases or []), up.numpy()]
    finally:
        hook.remove()
    return result


def _load_model(exp_dir: Path, run: HeadRun, num_classes: int, device: torch.device):
    cfg = load_run_config(exp_dir, run.run_dir)
    spec = cfg.head(run.head)
    model = _model_api()(cfg.model, num_classes, spec.module, dict(spec.params))
    # Our own checkpoint; it also holds numpy RNG states, which weights_only cannot read.
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    weights = state.get("model", state)
    if all(k.startswith("module.") for k in weights):  # saved from a DistributedDataParallel
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
    model.load_state_dict(weights)
    return model.to(device).eval()


def _denormalise(image: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image.cpu() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()  # (H, W, 3)


def _class_cmap(num_classes: int):
    base = plt.get_cmap("tab20").colors
    colours = [(0.0, 0.0, 0.0), *[base[i % len(base)] for i in range(max(num_classes - 1, 1))]]
    # Ignored pixels (label 255, masked) show white.
    return ListedColormap(colours[:num_classes] or colours[:1]).with_extremes(bad="white")


def _mark(ax, query: tuple[int, int]) -> None:
    ax.plot(query[1], query[0], marker="x", color="cyan", markersize=9, mew=2.5)


def _draw(
    heads: list[HeadMaps], samples: list, queries: list, num_classes: int, out: Path
) -> list[Path]:
    # Column plan: input, label, then per head its prediction and (if it has one) its map.
    plan: list[tuple[str, HeadMaps | None]] = [("input", None), ("label", None)]
    for head in heads:
        plan.append(("prediction", head))
        if any(m is not None for m in head.maps):
            plan.append(("map", head))
    rows, cols = len(samples), len(plan)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows + 0.4), squeeze=False)
    classes = {
        "cmap": _class_cmap(num_classes),
        "vmin": 0,
        "vmax": num_classes - 1,
        "interpolation": "nearest",
    }
    for r, ((image, label), query) in enumerate(zip(samples, queries, strict=True)):
        for c, (kind, head) in enumerate(plan):
            ax = axes[r, c]
            if kind == "input":
                ax.imshow(_denormalise(image))
                _mark(ax, query)
            elif kind == "label":
                ax.imshow(np.ma.masked_equal(label.cpu().numpy(), IGNORE_INDEX), **classes)
            elif kind == "prediction":
                ax.imshow(head.predictions[r], **classes)
            elif head.maps[r] is not None:
                cmap = "tab20" if head.categorical else "magma"
                ax.imshow(head.maps[r], cmap=cmap, interpolation="nearest")
                _mark(ax, query)
            ax.set_xticks([])
            ax.set_yticks([])
    for c, (kind, head) in enumerate(plan):
        if head is None:
            title = "input (× = query)" if kind == "input" else "label"
        else:
            title = f"{head.run.head}: {'prediction' if kind == 'prediction' else head.map_title}"
        axes[0, c].set_title(title, fontsize=7)
    written = [save_figure(fig, out)]

    ema = next((h for h in heads if h.bases), None)
    ema_out = out.with_name(f"{out.stem}_ema.png")
    if ema is None or not ema.bases:
        ema_out.unlink(missing_ok=True)  # a figure of heads no longer drawn would mislead
    else:
        k = ema.bases[0].shape[0]
        fig, axes = plt.subplots(rows, 1 + k, figsize=(1.7 * (1 + k), 1.7 * rows + 0.4))
        axes = np.asarray(axes).reshape(rows, 1 + k)
        for r, (image, _label) in enumerate(samples):
            axes[r, 0].imshow(_denormalise(image))
            for j in range(k):
                axes[r, 1 + j].imshow(ema.bases[r][j], cmap="magma", vmin=0.0, vmax=1.0)
        axes[0, 0].set_title("input", fontsize=7)
        for j in range(k):
            axes[0, 1 + j].set_title(f"{ema.run.head}: z_{j}", fontsize=7)
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        written.append(save_figure(fig, ema_out))
    return written


def render_attention_maps(
    exp_dir: Path, out: Path, num_images: int = 3, head_order: list[str] | None = None
) -> str:
    """Draw `out` (and `<out>_ema.png` when a head is EMA) from each head's last checkpoint.

    Returns one line for report.md saying what was drawn, or why nothing was.
    """
    exp_dir, out = Path(exp_dir), Path(out)
    runs = find_checkpoints(exp_dir, head_order)
    if not runs:
        kept = " The figure below is from an earlier build." if out.is_file() else ""
        return (
            "Attention maps not rebuilt: no checkpoints under runs/*/seed*/checkpoints/last.pt "
            f"(they are not committed; rerun the experiment to draw them).{kept}"
        )
    build_dataset, dataset_info = _data_api()
    cfg = load_run_config(exp_dir, runs[0].run_dir)
    dataset = build_dataset(cfg.data, "val", train=False)
    num_classes = dataset_info(cfg.data).num_classes
    count = min(num_images, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(count - 1, 1)) for i in range(count)})
    samples = [dataset[i] for i in indices]
    queries = [choose_query(label) for _image, label in samples]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    heads = []
    for run in runs:
        model = _load_model(exp_dir, run, num_classes, device)
        heads.append(head_maps(model, run, samples, queries))
        del model
    _draw(heads, samples, queries, num_classes, out)
    seeds = ", ".join(f"{r.head} seed {r.seed}" for r in runs)
    images = ", ".join(map(str, indices))
    return (
        f"Validation images {images}; each head's last checkpoint ({seeds}). Per head: its "
        "prediction and its module's map for the query pixel × (EMA: the base each pixel is "
        "most responsible to, and its first responsibilities below; A2: the first gather map), "
        "upsampled (nearest) from the feature grid."
    )


__all__ = ["HeadRun", "find_checkpoints", "main_map", "render_attention_maps"]
