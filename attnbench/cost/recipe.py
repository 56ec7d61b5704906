"""`python -m attnbench cost`: what every head costs at a training recipe's crop and batch.

    python -m attnbench cost                                   # experiments/voc_heads.yaml
    python -m attnbench cost --depths 50 --heads none,ema
    python -m attnbench cost --set data.crop_size=32 --set train.batch_size=2 --out /tmp/c

Per backbone depth (ResNet-50-D8 and ResNet-101-D8 by default) and per head of the
recipe, on generated images and labels of the recipe's crop size and batch (the cost
does not depend on the pixels; no pretrained weights are loaded), with the recipe's
numerics (bf16 autocast, channels_last and cudnn.benchmark on CUDA; float32 on CPU):

- training memory: on CUDA, torch.cuda.max_memory_allocated over the timed steps
  (weights, gradients and momentum included, as mmseg's Mem), reset after the warm-up
  steps; the warm-up's own peak, which holds cudnn.benchmark's trial workspaces, is
  reported beside it. On CPU: the profiler's allocation peak of one step (cpu_alloc_peak).
- training images/s: full SGD steps (forward, loss with the auxiliary head, backward,
  update), timed in windows that end with a synchronisation: median, IQR, contended flag.
- inference: images/s at the training batch and frames/s at batch 1, eval mode.

Beside each head: mmsegmentation's published Mem (GB) and fps (cost/published.py),
both as ratios to the FCN row of the same setting. Written to
<out>/<recipe>_<device>.csv and .md, named after the device, so a GPU table never
replaces a CPU one. A changed recipe (--set) must name its own --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from .. import env
from ..data import crop_hw
from ..errors import UserError
from ..experiment.config import ExperimentConfig, load_config
from ..experiment.overrides import add_override_option
from ..files import atomic_write_text
from ..measure.memory import cpu_peak_bytes
from ..model.segmenter import build_model
from ..train.loop import build_optimizer, train_one_iteration
from ..train.throughput import steady_throughput
from .recipe_report import recipe_markdown

DEFAULT_RECIPE = Path("experiments/voc_heads.yaml")
NUM_CLASSES = 21  # VOC; the classifier's width barely moves the cost
GB = 1e9


def configure_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", nargs="?", default=str(DEFAULT_RECIPE), help="experiment YAML")
    add_override_option(p, "e.g. data.crop_size=64 (needs --out)")
    p.add_argument("--depths", type=int, nargs="+", default=[50, 101], help="ResNet depths")
    p.add_argument("--heads", metavar="A,B", help="only these heads of the recipe")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument(
        "--out", type=Path, help="output folder (default runs/cost; the record: results/cost)"
    )
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (>= 1)")
    p.add_argument("--windows", type=int, default=5, help="timed windows per figure")
    p.add_argument("--steps", type=int, default=4, help="steps (batches) per window")


def command(args: argparse.Namespace) -> int:
    if args.overrides and args.out is None:
        raise UserError("--set changes the recipe: give --out, so runs/cost keeps the recipe's")
    if min(args.warmup, args.windows, args.steps) < 1:
        raise UserError("--warmup, --windows and --steps: expected whole numbers >= 1")
    cfg = _recipe(args.recipe, args.overrides)
    device = _device(args.device)
    heads = _heads(cfg, args.heads)
    out = args.out or Path("runs/cost")
    stem = f"{cfg.name}_{device_slug(device)}"
    rows: list[dict[str, Any]] = []
    jobs = [(depth, spec) for depth in args.depths for spec in heads]
    with env.numerics(device, cfg.train.threads), tqdm(jobs, desc="cost", unit="head") as bar:
        for depth, spec in bar:
            bar.set_postfix_str(f"R-{depth} {spec.name}")
            rows += measure_head(cfg, depth, spec, device, (args.warmup, args.windows, args.steps))
            _release(device)  # the model and its batch are gone: return their memory
            frame = pd.DataFrame(rows)
            _write(out, stem, frame, cfg)
    print(f"cost: wrote {out / stem}.csv and .md ({device_name(device)})")
    return 0


def _recipe(path: str, overrides: list[str]) -> ExperimentConfig:
    # Generated data: the recipe's dataset (and its root) and pretrained weights are not needed.
    fixed = ["data.dataset=synthetic", "data.root=null", "model.backbone.pretrained=null"]
    return load_config(path, [*overrides, *fixed])


def _device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available on this machine")
    return torch.device(name)


def _heads(cfg: ExperimentConfig, chosen: str | None) -> list[Any]:
    if not chosen:
        return list(cfg.heads)
    names = [n.strip() for n in chosen.split(",") if n.strip()]
    unknown = [n for n in names if n not in {h.name for h in cfg.heads}]
    if unknown:
        raise UserError(f"--heads: no head {', '.join(unknown)} in the recipe")
    return [cfg.head(n) for n in names]


def device_name(device: torch.device) -> str:
    return env.device_name(device)


def device_slug(device: torch.device) -> str:
    """A file-name tag, e.g. 'cuda_nvidia-h100-80gb-hbm3' or 'cpu_intel-r-xeon-r-processor'."""
    name = re.sub(r"[^a-z0-9]+", "-", device_name(device).lower()).strip("-")
    return f"{device.type}_{name}"


def measure_head(
    cfg: ExperimentConfig, depth: int, spec: Any, device: torch.device, plan: tuple[int, int, int]
) -> list[dict[str, Any]]:
    """Memory, training and inference rates of one (backbone depth, head)."""
    _release(device)
    model_cfg = dataclasses.replace(
        cfg.model, backbone=dataclasses.replace(cfg.model.backbone, depth=depth)
    )
    torch.manual_seed(0)
    model = build_model(model_cfg, NUM_CLASSES, spec.module, spec.params).to(device).train()
    channels_last = device.type == "cuda"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    images, labels = generated_batch(cfg.train.batch_size, cfg.data.crop_size, device)
    optimizer = build_optimizer(model, cfg)
    aux, amp = cfg.model.head.aux_weight, cfg.train.amp

    def step() -> None:
        train_one_iteration(
            model, optimizer, images, labels, lr=cfg.train.lr, aux_weight=aux, amp=amp
        )

    warmup, windows, steps = plan
    first_peak, steady_peak, memory_kind = training_memory(step, warmup, device)
    train_rates = window_rates(step, windows + 1, steps, images.shape[0], device)
    infer = inference_rates(model, images, amp, (windows, steps))
    record = Record(depth, spec, cfg, device)
    rows = [
        record.row("train_mem_gb", steady_peak / GB, "GB", memory_kind),
        record.row("train_mem_warmup_gb", first_peak / GB, "GB", f"{memory_kind}; warm-up"),
        *record.rates("train", train_rates),
        *record.rates("infer", infer[0]),
        *record.rates("infer_b1", infer[1]),
    ]
    return rows


def generated_batch(
    batch: int, crop_size: int | tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised-range images (B, 3, H, W) and labels (B, H, W) in [0, NUM_CLASSES)."""
    generator = torch.Generator().manual_seed(0)
    h, w = crop_hw(crop_size)
    images = torch.randn(batch, 3, h, w, generator=generator).to(device)
    labels = torch.randint(0, NUM_CLASSES, (batch, h, w), generator=generator).to(device)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images, labels


def training_memory(
    step: Callable[[], None], warmup: int, device: torch.device
) -> tuple[int, int, str]:
    """(peak during the warm-up, peak of one steady step, kind) in bytes."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(warmup):
            step()
        torch.cuda.synchronize(device)
        first = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return first, torch.cuda.max_memory_allocated(device), "cuda max_memory_allocated"
    first = cpu_peak_bytes(step)
    for _ in range(warmup - 1):
        step()
    return first, cpu_peak_bytes(step), "cpu_alloc_peak (profiler), over what was live before"


def window_rates(
    fn: Callable[[], Any], windows: int, steps: int, batch: int, device: torch.device
) -> list[float]:
    """Images per second of `windows` windows of `steps` calls, synchronised at each end."""
    rates = []
    for _ in range(windows):
        _sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            fn()
        _sync(device)
        rates.append(batch * steps / (time.perf_counter() - start))
    return rates


def inference_rates(
    model: torch.nn.Module, images: torch.Tensor, amp: bool, plan: tuple[int, int]
) -> tuple[list[float], list[float]]:
    """Window rates in eval mode without gradient: the whole batch, then one image."""
    windows, steps = plan
    model.eval()
    one = images[:1].clone(memory_format=torch.preserve_format)
    out = []
    for x in (images, one):

        def forward(x: torch.Tensor = x) -> None:
            with torch.no_grad(), env.autocast(x.device, amp):
                model(x)

        forward()  # warm-up: cudnn.benchmark searches for this batch size
        out.append(window_rates(forward, windows + 1, steps, x.shape[0], x.device))
    model.train()
    return out[0], out[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


@dataclasses.dataclass(frozen=True)
class Record:
    """The columns every row of one (depth, head) carries."""

    depth: int
    spec: Any
    cfg: ExperimentConfig
    device: torch.device

    def row(self, metric: str, value: float, unit: str, method: str) -> dict[str, Any]:
        cuda = self.device.type == "cuda"
        return {
            "backbone": f"R-{self.depth}-D{self.cfg.model.backbone.output_stride}",
            "depth": self.depth,
            "head": self.spec.name,
            "module": self.spec.module,
            "crop": "{}x{}".format(*crop_hw(self.cfg.data.crop_size)),
            "batch": self.cfg.train.batch_size,
            "metric": metric,
            "value": value,
            "unit": unit,
            "method": method,
            "device": self.device.type,
            "device_name": device_name(self.device),
            "dtype": "bfloat16 autocast" if cuda and self.cfg.train.amp else "float32",
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        }

    def rates(self, kind: str, rates: list[float]) -> list[dict[str, Any]]:
        summary = steady_throughput(rates[1:])  # the first window warms up
        assert summary is not None
        method = f"median of {summary.windows} windows after the first"
        return [
            self.row(f"{kind}_img_s", summary.median, "images/s", method),
            self.row(f"{kind}_img_s_q1", summary.q1, "images/s", method + "; first quartile"),
            self.row(f"{kind}_img_s_q3", summary.q3, "images/s", method + "; third quartile"),
            self.row(f"{kind}_contended", float(summary.contended), "flag", method),
        ]


def _write(out: Path, stem: str, frame: pd.DataFrame, cfg: ExperimentConfig) -> None:
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    atomic_write_text(out / f"{stem}.csv", buffer.getvalue())
    atomic_write_text(out / f"{stem}.md", recipe_markdown(frame, cfg.name))


__all__ = ["command", "configure_parser", "device_slug", "measure_head"]
