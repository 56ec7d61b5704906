"""Dilated ResNet-18/34/50/101 backbone with torchvision's parameter names.

The parameter names (conv1, bn1, layer1..layer4, <block>.downsample.0/.1, ...)
are those of torchvision's ResNet, so an ImageNet checkpoint saved by
torchvision loads with `load_torchvision_checkpoint`; its fc.* entries are
ignored because segmentation has no classifier on the backbone.

Dilation follows torchvision's `replace_stride_with_dilation`: a stage that
gives up its stride multiplies the running dilation by 2, and its first block
still uses the dilation of the stage before (the later blocks use the new
one). At output stride 8 that is layer3 = (1, 2, 2, ...) and layer4 =
(2, 4, 4); at 16 layer4 = (1, 2, 2). mmsegmentation's default instead dilates
every block of the stage, the first included; the difference is one block per
stage and does not change any parameter shape. In a BasicBlock both 3x3
convolutions use the block's dilation (torchvision's BasicBlock refuses
dilation, so there is no convention to copy there).

`deep_stem` replaces the 7x7 stem by three 3x3 convolutions (width/2,
width/2, width; the first with stride 2), as in ResNet-D / mmseg's
ResNetV1c. Its entries are stem.0/1/3/4/6/7 (conv, BN pairs of one
Sequential) and have no counterpart in a torchvision checkpoint: loading one
into a deep-stem model fails with a message saying so.

`width` is the channel count of the stem and of layer1's 3x3 convolutions;
64 is torchvision's ResNet, 16 or 32 give a small model for CPU experiments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ..errors import UserError

NormLayer = Callable[[int], nn.Module]


def _conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    # padding = dilation keeps the size at stride 1 and gives ceil(H / 2) at stride 2.
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def _conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


def _deep_stem(width: int, norm_layer: NormLayer) -> nn.Sequential:
    """Three 3x3 convolutions (width/2, width/2, width; the first with stride 2)."""
    half = width // 2
    return nn.Sequential(
        _conv3x3(3, half, stride=2),
        norm_layer(half),
        nn.ReLU(inplace=True),
        _conv3x3(half, half),
        norm_layer(half),
        nn.ReLU(inplace=True),
        _conv3x3(half, width),
        norm_layer(width),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """A residual unit: ReLU(branch(x) + x), with x through `downsample` when it is given.

    A subclass builds its branch's layers in `build`, under torchvision's attribute
    names, and applies them in `branch`.
    """

    expansion: int  # output channels / planes

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.build(inplanes, planes, stride, dilation, norm_layer)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def build(
        self, inplanes: int, planes: int, stride: int, dilation: int, norm_layer: NormLayer
    ) -> None:
        raise NotImplementedError

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.branch(x) + identity)


class BasicBlock(ResidualBlock):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def build(
        self, inplanes: int, planes: int, stride: int, dilation: int, norm_layer: NormLayer
    ) -> None:
        self.conv1 = _conv3x3(inplanes, planes, stride, dilation)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes, 1, dilation)
        self.bn2 = norm_layer(planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))


class Bottleneck(ResidualBlock):
    """1x1 -> 3x3 -> 1x1 (x4 channels); the stride sits on the 3x3 as in torchvision (V1.5)."""

    expansion = 4

    def build(
        self, inplanes: int, planes: int, stride: int, dilation: int, norm_layer: NormLayer
    ) -> None:
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = norm_layer(planes)
        self.conv2 = _conv3x3(planes, planes, stride, dilation)
        self.bn2 = norm_layer(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


LAYOUTS: dict[int, tuple[type[ResidualBlock], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}

# Which of layer2, layer3, layer4 trade their stride 2 for dilation.
_DILATE: dict[int, tuple[bool, bool, bool]] = {
    8: (False, True, True),
    16: (False, False, True),
    32: (False, False, False),
}


def _check_layout(depth: int, output_stride: int, width: int, stages: int) -> None:
    if not 0 <= stages <= 4:
        raise ValueError(f"stages must be 0 to 4, got {stages}")
    if depth not in LAYOUTS:
        raise ValueError(f"unknown ResNet depth {depth}; valid: {', '.join(map(str, LAYOUTS))}")
    if output_stride not in _DILATE:
        raise ValueError(
            f"unsupported output_stride {output_stride}; valid: {', '.join(map(str, _DILATE))}"
        )
    if width < 2 or width % 2:
        raise ValueError(f"width must be an even number >= 2, got {width}")


class ResNet(nn.Module):
    """Dilated ResNet; forward(img) returns (c3, c4), the outputs of layer3 and layer4.

    out_channels = (channels of c3, channels of c4). c4 has spatial size
    ceil(H / output_stride); c3 has ceil(H / min(output_stride, 16)).

    `stages` < 4 keeps only the stem and the first `stages` residual stages: forward
    then returns the outputs of the last two kept (the stem's, after its max-pool, for
    0 and 1), the layers after them are never built, and the output stride is that of
    the last stage kept (4 for 0 and 1, 8 for 2). It bounds the receptive field: with
    a 7x7 stem, ResNet-18 sees 11 px at stages 0, 43 at 1, 99 at 2 (the head's own 3x3
    convolutions add to it).
    """

    def __init__(
        self,
        depth: int = 50,
        *,
        output_stride: int = 8,
        deep_stem: bool = False,
        width: int = 64,
        stages: int = 4,
        norm_layer: NormLayer = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        _check_layout(depth, output_stride, width, stages)
        block, counts = LAYOUTS[depth]
        self.depth = depth
        self.deep_stem = deep_stem
        self.width = width
        self.stages = stages
        self._norm_layer = norm_layer

        if deep_stem:
            self.stem = _deep_stem(width, norm_layer)
        else:
            self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
            self.bn1 = norm_layer(width)
            self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        self._inplanes = width
        self._dilation = 1
        dilate = _DILATE[output_stride]
        channels = [width]  # after the stem, then after each stage
        for i in range(stages):
            stride, dilation = (1, False) if i == 0 else (2, dilate[i - 1])
            planes = width * 2**i
            self.add_module(
                f"layer{i + 1}", self._make_layer(block, planes, counts[i], stride, dilation)
            )
            channels.append(planes * block.expansion)
        self.out_channels: tuple[int, int] = (channels[max(stages - 1, 0)], channels[-1])
        self._init_weights()

    def _make_layer(
        self,
        block: type[ResidualBlock],
        planes: int,
        blocks: int,
        stride: int = 1,
        dilate: bool = False,
    ) -> nn.Sequential:
        previous_dilation = self._dilation
        if dilate:
            self._dilation *= stride
            stride = 1
        out = planes * block.expansion
        downsample = None
        if stride != 1 or self._inplanes != out:
            downsample = nn.Sequential(_conv1x1(self._inplanes, out, stride), self._norm_layer(out))
        # The first block keeps the previous dilation; see the module docstring.
        layers = [
            block(self._inplanes, planes, stride, previous_dilation, downsample, self._norm_layer)
        ]
        self._inplanes = out
        layers += [
            block(out, planes, 1, self._dilation, None, self._norm_layer) for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.stem(img) if self.deep_stem else self.relu(self.bn1(self.conv1(img)))
        x = self.maxpool(x)  # (B, w, H/4, W/4)
        previous = x
        for i in range(1, self.stages + 1):
            # layer2: (B, 2w*e, H/8, W/8); layer3: (B, 4w*e, H/min(os,16), ...); layer4: H/os
            previous, x = (x if i > 1 else previous), getattr(self, f"layer{i}")(x)
        return previous, x  # (c3, c4) with all four stages


def _first(keys: list[str], n: int = 5) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_torchvision_checkpoint(model: ResNet, path: str | Path) -> int:
    """Load a torchvision-format ResNet state_dict from a local file into `model`.

    fc.* entries are ignored. Every other key must match the model's keys
    and shapes; a missing file, an unreadable file, or any missing,
    unexpected or mis-shaped key raises UserError naming the file and the
    first offending keys. BatchNorm num_batches_tracked entries may be absent
    (torchvision's oldest checkpoints predate them). Returns the number of
    tensors loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"pretrained backbone checkpoint not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise UserError(f"cannot read pretrained backbone checkpoint {path}: {exc}") from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(v, torch.Tensor) for v in loaded.values()
    ):
        raise UserError(
            f"{path} is not a torchvision ResNet state_dict (expected a dict of tensors, "
            f"got {type(loaded).__name__})"
        )
    state = {k: v for k, v in loaded.items() if not k.startswith("fc.")}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in state
        if k in expected and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or mis_shaped:
        problems = []
        if missing:
            problems.append(f"missing keys: {_first(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_first(unexpected)}")
        if mis_shaped:
            problems.append(f"shape mismatches: {_first(mis_shaped, 3)}")
        hint = ""
        if model.deep_stem and "conv1.weight" in state:
            hint = (
                "; the deep stem (stem.*) has no counterpart in torchvision checkpoints, "
                "set backbone.deep_stem false to use one"
            )
        elif mis_shaped:
            hint = f"; is the checkpoint a ResNet-{model.depth} of width {model.width}?"
        raise UserError(
            f"checkpoint {path} does not fit ResNet-{model.depth} "
            f"(width {model.width}, deep_stem {model.deep_stem}): " + "; ".join(problems) + hint
        )
    model.load_state_dict(state, strict=True)
    return len(state)
