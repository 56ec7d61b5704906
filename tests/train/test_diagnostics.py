"""Engagement, knock-out and the long-range mIoU: the diagnostics of the probes."""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, TensorDataset

from attnbench.experiment.config import BackboneConfig, HeadConfig, ModelConfig
from attnbench.model.segmenter import build_model
from attnbench.train.diagnostics import engagement, gate_effect, knocked_out, long_range_miou

MODEL = ModelConfig(BackboneConfig(depth=18, width=8, stages=1), HeadConfig(channels=16, aux=False))


def _loader() -> DataLoader:
    torch.manual_seed(0)
    images = torch.randn(4, 3, 32, 32)
    return DataLoader(TensorDataset(images, torch.zeros(4, 32, 32, dtype=torch.long)), batch_size=2)


def test_a_closed_gate_is_not_engaged_and_an_open_one_is() -> None:
    torch.manual_seed(0)
    closed = build_model(MODEL, 3, "nonlocal")
    torch.manual_seed(0)
    opened = build_model(MODEL, 3, "nonlocal", open_gate=True)
    assert engagement(closed, _loader()) == 0.0
    assert engagement(opened, _loader()) > 0.05
    assert engagement(build_model(MODEL, 3, "none"), _loader()) == 0.0


def test_engagement_is_the_relative_change_of_the_module_input() -> None:
    model = build_model(MODEL, 3, "pool")
    seen = []
    model.head.context.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    value = engagement(model, _loader())
    change = sum(float((o - x).square().sum()) for x, o in seen)
    size = sum(float(x.square().sum()) for x, _ in seen)
    assert math.isclose(value, math.sqrt(change / size), rel_tol=1e-5)


def test_knocked_out_module_passes_its_input_through_and_comes_back() -> None:
    torch.manual_seed(0)
    model = build_model(MODEL, 3, "pool").eval()
    torch.manual_seed(0)
    plain = build_model(MODEL, 3, "none").eval()
    plain.load_state_dict(model.state_dict(), strict=False)  # same backbone and head
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(image)["out"]
        with knocked_out(model):
            assert torch.equal(model(image)["out"], plain(image)["out"])
        assert torch.equal(model(image)["out"], before)


def test_long_range_miou_averages_the_declared_classes_and_skips_absent_ones() -> None:
    iou = [90.0, 10.0, 30.0, float("nan"), 50.0]
    assert long_range_miou(iou, (1, 2, 3, 4)) == 30.0
    assert long_range_miou(iou, ()) is None


def test_the_gate_effect_sees_danets_closed_gammas_where_engagement_does_not() -> None:
    torch.manual_seed(0)
    closed = build_model(MODEL, 3, "danet")
    torch.manual_seed(0)
    opened = build_model(MODEL, 3, "danet", open_gate=True)
    assert engagement(closed, _loader()) > 0.05  # its convs change the input anyway
    assert gate_effect(closed, _loader()) == 0.0
    gammas = [g.clone() for g in opened.head.context.gates()]
    assert gate_effect(opened, _loader()) > 0.05
    for before, after in zip(gammas, opened.head.context.gates(), strict=True):
        assert torch.equal(before, after)  # closed for the measure, then restored


def test_the_gate_effect_of_a_residual_gate_is_its_engagement_and_nan_without_gates() -> None:
    torch.manual_seed(0)
    opened = build_model(MODEL, 3, "ccnet", open_gate=True)  # x + gamma * context
    assert math.isclose(gate_effect(opened, _loader()), engagement(opened, _loader()), rel_tol=1e-5)
    assert math.isnan(gate_effect(build_model(MODEL, 3, "isa"), _loader()))
    assert math.isnan(gate_effect(build_model(MODEL, 3, "none"), _loader()))
