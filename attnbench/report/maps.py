"""Attention-map figures: for a few validation images, the input, the label, and per head
its prediction and its context module's own map for a marked query pixel (drawn by
map_figures.py, one figure per image).

Unlike the tables, this needs the trained weights
(<output_dir>/<exp>/runs/<head>/seed<k>/checkpoints/last.pt, not committed): without them
the figure is left as it is and the returned note says so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import modules
from modules import ContextModule

from ..data.transforms import IGNORE_INDEX
from ..experiment.config import ExperimentConfig, load_config
from ..experiment.layout import RunFolder, run_folders
from .map_figures import HeadMaps, draw_all, image_figures


def find_checkpoints(exp_dir: Path, head_order: list[str] | None = None) -> list[RunFolder]:
    """Per head, the lowest finished seed with a checkpoint; in `head_order`, then by name."""
    found: dict[str, RunFolder] = {}
    for folder in run_folders(exp_dir):
        if folder.head not in found and folder.has_weights():
            found[folder.head] = folder
    order = [h for h in head_order or [] if h in found]
    order += sorted(h for h in found if h not in order)
    return [found[h] for h in order]


def load_run_config(exp_dir: Path, run: RunFolder) -> ExperimentConfig:
    """The run's resolved config (else the experiment's), without the pretrained backbone:
    the checkpoint holds every weight, and the ImageNet file may not be on this machine."""
    path = run.config
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


def main_map(
    context: ContextModule, maps: dict[str, torch.Tensor]
) -> tuple[torch.Tensor | None, str, bool]:
    """(map (h, w) of the first sample or None, its title, whether it is categorical): the
    map the module names as its MAIN_MAP."""
    key = context.MAIN_MAP
    if key is None or key not in maps:
        return None, "no map", False
    value = maps[key]  # (B, M, h, w)
    if context.MAIN_MAP_ARGMAX:
        return value[0].argmax(0).float(), context.MAIN_MAP_ARGMAX, True
    suffix = " (ch. 0)" if value.shape[1] > 1 else ""
    return value[0, 0].float(), f"{key}{suffix}", False


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
def head_maps(model: torch.nn.Module, run: RunFolder, samples: list, queries: list) -> HeadMaps:
    """Run one trained model on the samples and collect its prediction and maps."""
    context = model.head.context
    device = next(model.parameters()).device
    captured: dict[str, torch.Tensor] = {}
    hook = context.register_forward_pre_hook(lambda _m, args: captured.__setitem__("x", args[0]))
    name = next(n for n, cls in modules.REGISTRY.items() if type(context) is cls)
    result = HeadMaps(run, name, [], [], "no map", False, None)
    try:
        for (image, _label), query in zip(samples, queries, strict=True):
            size = tuple(image.shape[-2:])
            logits = model(image[None].to(device))["out"]  # (1, classes, H, W)
            result.predictions.append(logits.argmax(1)[0].cpu().numpy())
            feature = captured["x"]  # (1, C, h, w)
            maps = context.attention_maps(feature, _feature_query(query, size, feature.shape[-2:]))
            chosen, result.map_title, result.categorical = main_map(context, maps)
            result.maps.append(None if chosen is None else _to_image(chosen, size))
            if context.EXTRA_MAP in maps:
                z = maps[context.EXTRA_MAP][0, : context.EXTRA_MAP_COUNT]  # (K', h, w)
                up = F.interpolate(z[None].float().cpu(), size=size, mode="nearest")[0]
                result.extra = [*(result.extra or []), up.numpy()]
    finally:
        hook.remove()
    return result


def _load_model(exp_dir: Path, run: RunFolder, num_classes: int, device: torch.device):
    cfg = load_run_config(exp_dir, run)
    spec = cfg.head(run.head)
    model = _model_api()(cfg.model, num_classes, spec.module, dict(spec.params))
    # Our own checkpoint; it also holds numpy RNG states, which weights_only cannot read.
    state = torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    weights = state.get("model", state)
    if all(k.startswith("module.") for k in weights):  # saved from a DistributedDataParallel
        weights = {k.removeprefix("module."): v for k, v in weights.items()}
    model.load_state_dict(weights)
    return model.to(device).eval()


def render_attention_maps(
    exp_dir: Path, num_images: int = 3, head_order: list[str] | None = None, caption: str = ""
) -> str:
    """Draw attention_maps_<k>.png per image (and attention_maps_<module>.png for a head
    whose module has an EXTRA_MAP) into exp_dir from each head's last checkpoint, with
    `caption` (the runs' context) under each.

    Returns one line for report.md saying what was drawn, or why nothing was.
    """
    exp_dir = Path(exp_dir)
    runs = find_checkpoints(exp_dir, head_order)
    if not runs:
        kept = " The figures below are from an earlier build." if image_figures(exp_dir) else ""
        return (
            "Attention maps not rebuilt: no checkpoints under runs/*/seed*/checkpoints/last.pt "
            f"(they are not committed; rerun the experiment to draw them).{kept}"
        )
    build_dataset, dataset_info = _data_api()
    cfg = load_run_config(exp_dir, runs[0])
    dataset = build_dataset(cfg.data, "val", train=False)
    class_names = dataset_info(cfg.data).class_names
    count = min(num_images, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(count - 1, 1)) for i in range(count)})
    samples = [dataset[i] for i in indices]
    queries = [choose_query(label) for _image, label in samples]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    heads = []
    for run in runs:
        model = _load_model(exp_dir, run, len(class_names), device)
        heads.append(head_maps(model, run, samples, queries))
        del model
    draw_all(heads, samples, queries, class_names, indices, exp_dir, caption)
    seeds = ", ".join(f"{r.head} seed {r.seed}" for r in runs)
    images = ", ".join(map(str, indices))
    return (
        f"Validation images {images}, one figure each; each head's last checkpoint ({seeds}). "
        "Per head: its prediction and its module's map for the query pixel × (EMA: the base "
        "each pixel is most responsible to, and its first responsibilities in a figure of "
        "their own; A2: the first gather map), upsampled (nearest) from the feature grid and "
        "divided by its largest weight."
    )


__all__ = ["find_checkpoints", "main_map", "render_attention_maps"]
