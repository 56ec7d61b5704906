"""Backbone, shared head and Segmenter: shapes, aux output, checkpoints, parameter counts."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

import modules
from attnbench.errors import UserError
from attnbench.experiment.config import BackboneConfig, HeadConfig, ModelConfig
from attnbench.model.backbone import ResNet, load_torchvision_checkpoint
from attnbench.model.head import AuxHead, SegHead
from attnbench.model.segmenter import (
    Segmenter,
    build_model,
    count_parameters,
)

# torchvision's published parameter counts (ResNet*_Weights.IMAGENET1K_V1 meta["num_params"]),
# all with the 1000-class fc layer, which the backbone does not have.
TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160}


def _fc_params(depth: int) -> int:
    features = 512 if depth < 50 else 2048
    return features * 1000 + 1000


def _model_cfg(pretrained: str | None = None, **overrides: Any) -> ModelConfig:
    """A small ModelConfig: ResNet-18 of width 16, head channels 16; overrides by field name."""
    backbone = {"depth": 18, "output_stride": 8, "deep_stem": False, "width": 16}
    head = {"channels": 16, "concat_input": True, "dropout": 0.1, "aux": True, "aux_weight": 0.4}
    for key, value in overrides.items():
        (backbone if key in backbone else head)[key] = value
    return ModelConfig(
        backbone=BackboneConfig(**backbone, pretrained=pretrained), head=HeadConfig(**head)
    )


def _torchvision_layout(model: ResNet) -> dict[str, torch.Tensor]:
    """The model's state dict plus the fc entries a torchvision checkpoint carries."""
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.state_dict().items()}
    state["fc.weight"] = torch.randn(1000, model.out_channels[1])
    state["fc.bias"] = torch.randn(1000)
    return state


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_parameter_counts_match_torchvision_without_fc(depth: int) -> None:
    with torch.device("meta"):  # no memory, no init cost
        model = ResNet(depth, width=64)
    assert count_parameters(model) == TORCHVISION_PARAMS[depth] - _fc_params(depth)


def test_resnet50_keys_follow_torchvision_layout() -> None:
    with torch.device("meta"):
        model = ResNet(50)
    keys = model.state_dict().keys()
    # 320 entries in torchvision's resnet50 state_dict, 2 of them fc.
    assert len(keys) == 318
    for key in (
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer1.0.downsample.1.num_batches_tracked",
        "layer3.5.conv3.weight",
        "layer4.2.bn3.bias",
    ):
        assert key in keys
    assert model.layer4[0].conv2.weight.shape == (512, 512, 3, 3)


@pytest.mark.parametrize(
    ("output_stride", "size"), [(8, 65), (8, 64), (16, 65), (16, 64), (32, 65), (32, 64)]
)
def test_feature_sizes(output_stride: int, size: int) -> None:
    model = ResNet(18, output_stride=output_stride, width=16).eval()
    with torch.no_grad():
        c3, c4 = model(torch.randn(1, 3, size, size))
    side3 = math.ceil(size / min(output_stride, 16))  # layer4 alone strides at OS 32
    side4 = math.ceil(size / output_stride)
    assert c3.shape == (1, model.out_channels[0], side3, side3)
    assert c4.shape == (1, model.out_channels[1], side4, side4)
    # Spelled out for the sizes of the brief: 65 -> 9 / 5, 64 -> 8 / 4.
    expected = {(8, 65): 9, (8, 64): 8, (16, 65): 5, (16, 64): 4, (32, 65): 3, (32, 64): 2}
    assert side4 == expected[(output_stride, size)]


def test_dilation_follows_torchvision_replace_stride_with_dilation() -> None:
    model = ResNet(50, output_stride=8, width=16)
    assert [b.conv2.dilation[0] for b in model.layer3] == [1, 2, 2, 2, 2, 2]
    assert [b.conv2.dilation[0] for b in model.layer4] == [2, 4, 4]
    assert all(b.conv2.stride == (1, 1) for b in [*model.layer3, *model.layer4])
    model = ResNet(50, output_stride=16, width=16)
    assert model.layer3[0].conv2.stride == (2, 2)
    assert [b.conv2.dilation[0] for b in model.layer4] == [1, 2, 2]


def test_bottleneck_out_channels() -> None:
    model = ResNet(50, width=16)
    assert model.out_channels == (256, 512)
    c3, c4 = model.eval()(torch.randn(1, 3, 33, 33))
    assert (c3.shape[1], c4.shape[1]) == model.out_channels


def test_unknown_depth_or_stride_raises() -> None:
    with pytest.raises(ValueError, match="depth"):
        ResNet(26)
    with pytest.raises(ValueError, match="output_stride"):
        ResNet(18, output_stride=4)


def test_checkpoint_loads(tmp_path) -> None:
    source = ResNet(18, width=16)
    state = _torchvision_layout(source)
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = ResNet(18, width=16)
    assert load_torchvision_checkpoint(model, path) == len(state) - 2
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_checkpoint_without_num_batches_tracked_loads(tmp_path) -> None:
    state = _torchvision_layout(ResNet(18, width=16))
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "old.pth")
    load_torchvision_checkpoint(ResNet(18, width=16), tmp_path / "old.pth")


def test_checkpoint_key_mismatch_raises(tmp_path) -> None:
    state = _torchvision_layout(ResNet(18, width=16))
    state["layer2.0.conv9.weight"] = state.pop("layer2.0.conv1.weight")
    path = tmp_path / "renamed.pth"
    torch.save(state, path)
    with pytest.raises(UserError) as err:
        load_torchvision_checkpoint(ResNet(18, width=16), path)
    message = str(err.value)
    assert str(path) in message
    assert "missing keys: layer2.0.conv1.weight" in message
    assert "unexpected keys: layer2.0.conv9.weight" in message


def test_checkpoint_shape_mismatch_raises(tmp_path) -> None:
    torch.save(_torchvision_layout(ResNet(18, width=32)), tmp_path / "wide.pth")
    with pytest.raises(UserError, match=r"shape mismatches: conv1\.weight"):
        load_torchvision_checkpoint(ResNet(18, width=16), tmp_path / "wide.pth")


def test_checkpoint_into_deep_stem_says_why(tmp_path) -> None:
    torch.save(_torchvision_layout(ResNet(18, width=16)), tmp_path / "tv.pth")
    with pytest.raises(UserError, match="deep stem"):
        load_torchvision_checkpoint(ResNet(18, width=16, deep_stem=True), tmp_path / "tv.pth")


def test_checkpoint_missing_or_unreadable_file(tmp_path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(UserError, match=r"nope\.pth"):
        load_torchvision_checkpoint(ResNet(18, width=16), missing)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("not a checkpoint")
    with pytest.raises(UserError, match=r"garbage\.pth"):
        load_torchvision_checkpoint(ResNet(18, width=16), garbage)


def test_build_model_loads_pretrained(tmp_path) -> None:
    state = _torchvision_layout(ResNet(18, width=16))
    torch.save(state, tmp_path / "r18.pth")
    model = build_model(_model_cfg(str(tmp_path / "r18.pth")), 5, "none", {})
    assert torch.equal(model.backbone.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    with pytest.raises(UserError, match="not found"):
        build_model(_model_cfg(str(tmp_path / "other.pth")), 5, "none", {})


@pytest.mark.parametrize("output_stride", [8, 16])
@pytest.mark.parametrize("deep_stem", [False, True])
def test_segmenter_output_shapes(output_stride: int, deep_stem: bool) -> None:
    cfg = _model_cfg(output_stride=output_stride, deep_stem=deep_stem)
    model = build_model(cfg, num_classes=7, module_name="none", module_params={})
    img = torch.randn(2, 3, 65, 71)
    out = model.train()(img)
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (2, 7, 65, 71)
    with torch.no_grad():
        out = model.eval()(img)
    assert set(out) == {"out"}
    assert out["out"].shape == (2, 7, 65, 71)


def test_no_aux_head_when_disabled() -> None:
    model = build_model(_model_cfg(aux=False, concat_input=False), 3, "none", {})
    assert model.aux_head is None
    assert model.head.fuse is None
    assert set(model.train()(torch.randn(2, 3, 33, 33))) == {"out"}


@pytest.mark.parametrize("name", modules.available())
def test_every_module_builds_into_the_head(name: str) -> None:
    model = build_model(_model_cfg(), num_classes=4, module_name=name, module_params={})
    assert model.head.context is not None
    assert isinstance(model.head.context, type(modules.build(name, 16)))
    out = model.train()(torch.randn(2, 3, 41, 37))
    assert out["out"].shape == (2, 4, 41, 37)
    out["out"].mean().backward()
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 41, 37))["out"].shape == (1, 4, 41, 37)
        assert model.context_input(torch.randn(1, 3, 41, 37)).shape == (1, 16, 6, 5)


def test_module_build_errors_propagate() -> None:
    with pytest.raises(ValueError, match="unknown module"):
        build_model(_model_cfg(), 4, "no_such_module", {})
    with pytest.raises(ValueError, match="no hyper-parameter"):
        build_model(_model_cfg(), 4, "none", {"bogus": 1})


def test_count_parameters_adds_up_over_the_parts() -> None:
    model = build_model(_model_cfg(), 4, "none", {})
    parts = (model.backbone, model.head, model.aux_head)
    assert count_parameters(model) == sum(count_parameters(p) for p in parts)
    assert count_parameters(model.head.context) == 0
    assert count_parameters(list(model.head.parameters())) == count_parameters(model.head)


def test_head_layout() -> None:
    context = modules.build("none", 8)
    head = SegHead(32, 8, 5, context, concat_input=True, dropout=0.1)
    assert head.context is context
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    # reduce, project, fuse: 3x3 without bias; classifier: 1x1 with bias.
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (32, 8, (3, 3)),
        (8, 8, (3, 3)),
        (40, 8, (3, 3)),
        (8, 5, (1, 1)),
    ]
    assert [c.bias is None for c in convs] == [True, True, True, False]
    assert head.eval()(torch.randn(1, 32, 9, 7)).shape == (1, 5, 9, 7)
    aux = AuxHead(1024, 21)
    assert aux.channels == 256
    assert aux.eval()(torch.randn(1, 1024, 3, 3)).shape == (1, 21, 3, 3)


def test_segmenter_without_aux_head_class() -> None:
    backbone = ResNet(18, width=16)
    head = SegHead(backbone.out_channels[1], 16, 3, modules.build("none", 16))
    model = Segmenter(backbone, head).train()
    assert set(model(torch.randn(2, 3, 17, 19))) == {"out"}


@pytest.mark.parametrize(
    ("stages", "channels", "stride"),
    [(0, (8, 8), 4), (1, (8, 8), 4), (2, (8, 16), 8), (4, (32, 64), 8)],
)
def test_fewer_stages_keep_the_first_layers_only(stages: int, channels, stride: int) -> None:
    backbone = ResNet(18, width=8, stages=stages)
    assert backbone.out_channels == channels
    built = {name.split(".")[0] for name, _ in backbone.named_parameters()}
    assert built == {"conv1", "bn1", *(f"layer{i}" for i in range(1, stages + 1))}
    c3, c4 = backbone(torch.randn(1, 3, 64, 64))
    assert c3.shape[1] == channels[0] and c4.shape[1:] == (channels[1], 64 // stride, 64 // stride)


def _probe_model(stages: int, module: str = "none", open_gate: bool = False):
    backbone = BackboneConfig(depth=18, width=8, stages=stages)
    head = HeadConfig(channels=8, concat_input=False, aux=False)
    return build_model(ModelConfig(backbone, head), 3, module, open_gate=open_gate)


def test_the_stage_cut_bounds_the_receptive_field() -> None:
    from attnbench.model.receptive_field import receptive_field

    fields = [receptive_field(_probe_model(stages), 160) for stages in (0, 1, 2)]
    # Stem 11 px wide, layer1 43, layer2 99, plus the head's two 3x3 convolutions at the
    # last stride and the bilinear upsampling: half-widths 17, 33 and 67 or so.
    supports = [field.support for field in fields]
    assert 11 // 2 < supports[0] < supports[1] < supports[2] < 80, supports
    assert all(field.effective <= field.support for field in fields)
    # Attention sees the whole image: the support is the image's half-width.
    assert receptive_field(_probe_model(0, "nonlocal", open_gate=True), 64).support == 32
