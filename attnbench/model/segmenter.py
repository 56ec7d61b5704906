"""Segmenter = dilated ResNet + shared head (+ auxiliary FCN head), built from the config.

    model = build_model(cfg.model, num_classes=21, module_name="ema", module_params={})
    out = model(img)          # {"out": (B, K, H, W)} (+ "aux" in training mode)
    model.head.context        # the modules/ instance

The context module only sees its channel count and its own hyper-parameters;
the config stays here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import modules

from .backbone import ResNet, load_torchvision_checkpoint
from .head import AuxHead, SegHead


class Segmenter(nn.Module):
    """Backbone -> head on c4 (and aux head on c3); logits upsampled to the input size."""

    def __init__(self, backbone: ResNet, head: SegHead, aux_head: AuxHead | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head

    def forward(self, img: torch.Tensor, *, upsample: bool = True) -> dict[str, torch.Tensor]:
        """Logits at the input's size; with upsample=False at the heads' own resolution
        (train.loss_resolution: head)."""
        size = img.shape[-2:] if upsample else None
        c3, c4 = self.backbone(img)
        out = {"out": _upsample(self.head(c4), size)}  # (B, K, H, W)
        if self.training and self.aux_head is not None:
            out["aux"] = _upsample(self.aux_head(c3), size)
        return out

    @torch.no_grad()
    def context_input(self, img: torch.Tensor) -> torch.Tensor:
        """The feature the context module receives for `img`, e.g. for attention_maps."""
        _, c4 = self.backbone(img)
        return self.head.context_input(c4)  # (B, C, h, w)


def _upsample(logits: torch.Tensor, size: torch.Size | None) -> torch.Tensor:
    if size is None:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def build_model(
    model_cfg: Any,
    num_classes: int,
    module_name: str,
    module_params: Mapping[str, Any] | None = None,
    *,
    open_gate: bool = False,
) -> Segmenter:
    """Build the Segmenter that model_cfg (a ModelConfig) describes, with context module
    `module_name`, its gate opened when `open_gate`. Loads backbone.pretrained when set
    (UserError if it does not fit); ValueError from modules.build (unknown name or
    hyper-parameter) propagates as is.
    """
    bb, hd = model_cfg.backbone, model_cfg.head
    backbone = ResNet(
        bb.depth,
        output_stride=bb.output_stride,
        deep_stem=bb.deep_stem,
        width=bb.width,
        stages=bb.stages,
    )
    if bb.pretrained:
        load_torchvision_checkpoint(backbone, bb.pretrained)
    c3_channels, c4_channels = backbone.out_channels
    context = modules.build(module_name, hd.channels, **dict(module_params or {}))
    if open_gate:
        context.open_gate()
    head = SegHead(
        c4_channels,
        hd.channels,
        num_classes,
        context,
        concat_input=hd.concat_input,
        dropout=hd.dropout,
    )
    aux_head = AuxHead(c3_channels, num_classes) if hd.aux else None
    return Segmenter(backbone, head, aux_head)


def count_parameters(params: nn.Module | Iterable[nn.Parameter]) -> int:
    """Number of scalars in a module's parameters or in a list of parameters (frozen ones too)."""
    if isinstance(params, nn.Module):
        params = params.parameters()
    return sum(p.numel() for p in params)
