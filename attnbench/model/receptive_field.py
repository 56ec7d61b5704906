"""How far a segmenter's prediction at one pixel can see: its receptive field, measured.

Both figures come from the gradient of the centre pixel's logits with respect to the
input image, in evaluation mode:

    support     the half-width (Chebyshev, in pixels) of the region where the gradient
                is non-zero for some input: the theoretical receptive field, as the
                network is wired (kernel sizes, strides, dilations, the upsampling).
                Attention or pooling modules make it the whole image.
    effective   the half-width of the smallest centred square that holds `mass` of the
                gradient's magnitude: where the prediction actually looks (Luo et al.,
                "Understanding the Effective Receptive Field", arXiv 1701.04128).

The probes use `support` to show that the plain head cannot reach the cue, and report
`effective` of the trained heads beside it.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn


class ReceptiveField(NamedTuple):
    support: int  # px from the centre pixel, Chebyshev
    effective: int


def centre_gradient(
    model: nn.Module, image_size: int, inputs: int = 4, seed: int = 0
) -> torch.Tensor:
    """|d logits(centre) / d image| summed over channels and `inputs` random images: (H, W)."""
    generator = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total = torch.zeros(image_size, image_size, device=device, dtype=torch.float64)
    centre = image_size // 2
    try:
        for _ in range(inputs):
            image = torch.randn(1, 3, image_size, image_size, generator=generator).to(device)
            image.requires_grad_(True)
            logits = model(image)["out"]  # (1, K, H, W)
            logits[0, :, centre, centre].sum().backward()
            total += image.grad.abs().sum((0, 1)).double()  # (H, W)
            model.zero_grad(set_to_none=True)
    finally:
        model.train(was_training)
    return total


def receptive_field(model: nn.Module, image_size: int, mass: float = 0.95) -> ReceptiveField:
    """The support and the effective half-width of the centre pixel's receptive field."""
    grad = centre_gradient(model, image_size)  # (H, W)
    centre = image_size // 2
    ys, xs = torch.nonzero(grad > 0, as_tuple=True)
    if ys.numel() == 0:
        return ReceptiveField(0, 0)
    support = int(torch.stack([(ys - centre).abs(), (xs - centre).abs()]).max())
    coords = torch.arange(image_size, device=grad.device) - centre
    radius = torch.maximum(coords.abs()[:, None], coords.abs()[None, :])  # (H, W)
    # Mass inside each half-width r, from the cumulative sum of the mass at radius r.
    per_radius = torch.zeros(image_size, dtype=torch.float64, device=grad.device)
    per_radius.index_add_(0, radius.flatten(), grad.flatten())
    inside = per_radius.cumsum(0) / per_radius.sum()
    effective = int(torch.nonzero(inside >= mass)[0])
    return ReceptiveField(support, effective)
