"""The shared segmentation head and the auxiliary FCN head.

Every context module sits in the same head so that only the module differs
between runs (docs/modules.md, "The shared head"):

    reduce  (3x3 conv in -> C, BN, ReLU)
    context (the module, C -> C)
    project (3x3 conv C -> C, BN, ReLU)
    fuse    (concat[backbone feature, projected], 3x3 conv in + C -> C, BN, ReLU)  optional
    Dropout2d -> 1x1 classifier

With the identity module this is mmsegmentation's two-conv FCN head with
concat_input, the baseline. Upsampling to the image size is the model's job.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(cin: int, cout: int, kernel_size: int = 3) -> nn.Sequential:
    """Conv (no bias: the BN's shift replaces it), BN, ReLU; padding keeps the size."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _classifier(channels: int, num_classes: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, num_classes, 1)
    # Small initial logits, as mmseg's decode heads: the first losses stay near log(K).
    nn.init.normal_(conv.weight, std=0.01)
    nn.init.zeros_(conv.bias)
    return conv


class SegHead(nn.Module):
    """The shared head around one context module; `context` is that module."""

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        context: nn.Module,
        *,
        concat_input: bool = True,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.channels = channels
        self.reduce = conv_bn_relu(in_channels, channels)
        self.context = context
        self.project = conv_bn_relu(channels, channels)
        self.fuse = conv_bn_relu(in_channels + channels, channels) if concat_input else None
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = _classifier(channels, num_classes)

    def context_input(self, feature: torch.Tensor) -> torch.Tensor:
        """The tensor the context module receives for backbone feature `feature`."""
        return self.reduce(feature)  # (B, C, h, w)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        x = self.reduce(feature)  # (B, C, h, w)
        x = self.context(x)  # (B, C, h, w)
        x = self.project(x)
        if self.fuse is not None:
            x = self.fuse(torch.cat([feature, x], dim=1))  # (B, in + C, h, w) -> (B, C, h, w)
        return self.classifier(self.dropout(x))  # (B, K, h, w)


class AuxHead(nn.Module):
    """FCN head on the stage-3 feature, used only for the auxiliary training loss.

    channels defaults to in_channels // 4: 256 on ResNet-50/101 at width 64
    (mmseg's auxiliary head), and proportionally less for narrow backbones.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        channels: int | None = None,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        channels = channels if channels is not None else max(in_channels // 4, 1)
        self.channels = channels
        self.conv = conv_bn_relu(in_channels, channels)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = _classifier(channels, num_classes)

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.conv(feature)))  # (B, K, h, w)
