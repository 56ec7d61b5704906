"""Pieces of training: poly lr, the reproducible batch order, seeded samples, the loss,
evaluation with flip and scales, checkpoints."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

import modules
from attnbench.data.sampling import IterationBatches, SeededSamples, derive_seed, eval_loader
from attnbench.distributed import DistInfo
from attnbench.errors import UserError
from attnbench.experiment.config import BackboneConfig, HeadConfig, ModelConfig
from attnbench.model.segmenter import build_model
from attnbench.train import checkpoint
from attnbench.train.evaluate import evaluate, predict
from attnbench.train.loop import build_optimizer, build_scheduler, train_one_iteration
from attnbench.train.loss import labels_at, segmentation_loss


def _old_poly_lr(base_lr: float, iteration: int, total: int, power: float) -> float:
    """The schedule as it was written by hand before torch's PolynomialLR took over."""
    return base_lr * (1.0 - iteration / total) ** power


def _rates(total: int, power: float, start: int, steps: int) -> list[float]:
    cfg = SimpleNamespace(train=SimpleNamespace(lr=0.01, iterations=total, poly_power=power))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.5)  # reset to 0.01
    scheduler = build_scheduler(optimizer, cfg, start)
    rates = []
    for _ in range(steps):
        rates.append(scheduler.get_last_lr()[0])
        assert optimizer.param_groups[0]["lr"] == rates[-1]
        optimizer.step()
        scheduler.step()
    return rates


@pytest.mark.parametrize(("total", "power"), [(100, 0.9), (100, 1.0), (20, 0.9)])
def test_the_poly_schedule_is_unchanged(total: int, power: float) -> None:
    rates = _rates(total, power, 0, total)
    old = [_old_poly_lr(0.01, i, total, power) for i in range(total)]
    assert rates[0] == 0.01 and rates == pytest.approx(old, rel=1e-12, abs=0)
    assert rates == sorted(rates, reverse=True) and rates[-1] > 0


def test_a_resumed_schedule_continues_where_it_stopped() -> None:
    assert _rates(100, 0.9, 37, 5) == _rates(100, 0.9, 0, 42)[37:]


def _keys(batches: IterationBatches) -> list[list[tuple[int, int, int]]]:
    return list(iter(batches))


def test_batches_depend_only_on_seed_and_iteration() -> None:
    full = _keys(IterationBatches(10, 4, seed=3, start=0, stop=9))
    assert len(full) == 9 and all(len(b) == 4 for b in full)
    # an epoch (2 batches of 4 out of 10, the rest dropped) has no repeated image
    epoch = [k[2] for b in full[:2] for k in b]
    assert len(set(epoch)) == 8
    assert _keys(IterationBatches(10, 4, seed=3, start=5, stop=9)) == full[5:]
    assert _keys(IterationBatches(10, 4, seed=4, start=0, stop=9)) != full


def test_ranks_split_the_same_global_batch() -> None:
    single = _keys(IterationBatches(12, 4, seed=0, start=0, stop=5))
    r0 = _keys(
        IterationBatches(12, 4, seed=0, start=0, stop=5, dist=DistInfo(rank=0, world_size=2))
    )
    r1 = _keys(
        IterationBatches(12, 4, seed=0, start=0, stop=5, dist=DistInfo(rank=1, world_size=2))
    )
    assert [a + b for a, b in zip(r0, r1, strict=True)] == single


def test_batch_errors_name_the_key() -> None:
    with pytest.raises(UserError, match=r"train\.batch_size"):
        IterationBatches(12, 4, seed=0, start=0, stop=5, dist=DistInfo(world_size=3))
    with pytest.raises(UserError, match=r"train\.batch_size"):
        IterationBatches(3, 4, seed=0, start=0, stop=5)


class _Noisy(Dataset):
    """Each item draws from the global generator, like a random augmentation."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3) + index


def test_seeded_samples_repeat_and_leave_the_global_rng_alone() -> None:
    data = SeededSamples(_Noisy(), seed=7)
    torch.manual_seed(0)
    before = torch.get_rng_state()
    first = data[(5, 1, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(data[(5, 1, 2)], first)
    assert not torch.equal(data[(6, 1, 2)], first)
    assert not torch.equal(data[(5, 0, 2)], first)
    assert derive_seed(1, 2) != derive_seed(2, 1)


class _Oracle(nn.Module):
    """Reads the class from image channel 0: a perfect, flip-equivariant segmenter."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = img[:, 0].round().long().clamp(0, self.num_classes - 1)  # (B, H, W)
        logits = nn.functional.one_hot(labels, self.num_classes).permute(0, 3, 1, 2).float()
        return {"out": logits * 10 * self.scale}


class _Pairs(Dataset):
    def __init__(self, n: int = 3) -> None:
        gen = torch.Generator().manual_seed(1)
        self.labels = [torch.randint(0, 3, (8, 6), generator=gen) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        label = self.labels[i]
        image = label.float()[None].expand(3, -1, -1).clone()
        label = label.clone()
        label[0, 0] = 255
        return image, label


@pytest.mark.parametrize("flip", [False, True])
def test_evaluate_whole_image_with_flip(flip: bool) -> None:
    loader = eval_loader(_Pairs(), batch_size=1, num_workers=0, pin_memory=False)
    scores = evaluate(_Oracle(3), loader, 3, flip=flip)
    assert scores["mIoU"] == 100.0 and scores["pixel_acc"] == 100.0


def test_multi_scale_prediction_is_at_input_size() -> None:
    images = torch.stack([_Pairs()[i][0] for i in range(2)])  # (2, 3, 8, 6)
    probs = predict(_Oracle(3), images, scales=(0.5, 1.0, 1.5), flip=True)
    assert probs.shape == (2, 3, 8, 6)
    assert torch.allclose(probs.sum(1), torch.ones(2, 8, 6))
    single = predict(_Oracle(3), images)
    assert torch.equal(predict(_Oracle(3), images, scales=(1.0, 1.0)), single)


def test_eval_loader_shards_cover_every_image_once() -> None:
    shards = [
        list(eval_loader(_Pairs(5), 1, 0, False, DistInfo(rank=r, world_size=2)).sampler)
        for r in range(2)
    ]
    assert sorted(shards[0] + shards[1]) == list(range(5))


def test_loss_ignores_255_and_weights_aux() -> None:
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 4, 4))
    labels[:, 0] = 255
    main = segmentation_loss({"out": logits}, labels, 0.4)
    both = segmentation_loss({"out": logits, "aux": logits}, labels, 0.4)
    assert both == pytest.approx(1.4 * main)
    keep = labels != 255
    manual = nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], labels[keep])
    assert main == pytest.approx(manual)


def test_labels_at_the_head_are_those_under_each_head_pixel_centre() -> None:
    labels = torch.randint(0, 5, (2, 96, 96))
    labels[0, :10] = 255
    assert torch.equal(labels_at(labels, (24, 24)), labels[:, 2::4, 2::4])
    assert labels_at(labels, (96, 96)) is labels
    odd = labels_at(labels[:, :95, :94], (12, 12))  # not a whole stride: nearest-exact
    assert odd.shape == (2, 12, 12) and odd.dtype == labels.dtype


def test_loss_at_the_head_resolution_compares_head_logits_with_sampled_labels() -> None:
    model_cfg = ModelConfig(
        backbone=BackboneConfig(depth=18, width=8, stages=0),
        head=HeadConfig(channels=8, concat_input=False, aux=True),
    )
    model = build_model(model_cfg, 3, "none")
    images, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    torch.manual_seed(0)
    head = model(images, upsample=False)
    assert head["out"].shape == head["aux"].shape == (2, 3, 8, 8)  # the stem's stride 4
    loss = segmentation_loss(head, labels, 0.4)
    sampled = labels[:, 2::4, 2::4]
    out = nn.functional.cross_entropy(head["out"], sampled)
    aux = nn.functional.cross_entropy(head["aux"], sampled)
    assert float(loss.detach()) == pytest.approx(float((out + 0.4 * aux).detach()))
    torch.manual_seed(0)
    full = model(images)
    assert full["out"].shape == (2, 3, 32, 32)
    cfg = SimpleNamespace(train=SimpleNamespace(lr=0.1, momentum=0.9, weight_decay=0.0))
    opt = build_optimizer(model, cfg)  # type: ignore[arg-type]
    torch.manual_seed(0)
    step = train_one_iteration(
        model, opt, images, labels, lr=0.1, aux_weight=0.4, resolution="head"
    )
    assert float(step) == pytest.approx(float(loss.detach()))


def test_one_iteration_sets_lr_and_skips_frozen_parameters() -> None:
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1))
    model[0].weight.requires_grad_(False)
    cfg = SimpleNamespace(train=SimpleNamespace(lr=0.1, momentum=0.9, weight_decay=0.0))
    opt = build_optimizer(model, cfg)  # type: ignore[arg-type]
    assert all(p.requires_grad for g in opt.param_groups for p in g["params"])
    frozen = model[0].weight.clone()

    class Wrap(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"out": self.inner(x)}

    loss = train_one_iteration(
        Wrap(),
        opt,
        torch.randn(2, 3, 4, 4),
        torch.randint(0, 3, (2, 4, 4)),
        lr=0.05,
        aux_weight=0.4,
    )
    assert opt.param_groups[0]["lr"] == 0.05 and not loss.requires_grad
    assert torch.equal(model[0].weight, frozen)


def test_checkpoint_restores_rng_and_hash_tells_weights_apart(tmp_path: Path) -> None:
    path = tmp_path / "last.pt"
    model = nn.Linear(3, 2)
    torch.manual_seed(5)
    checkpoint.save_checkpoint(path, {"model": model.state_dict(), "iteration": 4}, is_main=True)
    expected = torch.rand(3)
    torch.manual_seed(99)
    state = checkpoint.load_checkpoint(path, rank=0)
    assert state is not None and state["iteration"] == 4
    assert torch.equal(torch.rand(3), expected)
    assert checkpoint.state_hash(state["model"]) == checkpoint.state_hash(model.state_dict())
    with torch.no_grad():
        model.bias[0] += 1e-7
    assert checkpoint.state_hash(state["model"]) != checkpoint.state_hash(model.state_dict())
    assert checkpoint.load_checkpoint(tmp_path / "none.pt", rank=0) is None
    with pytest.raises(UserError, match="saved by 1 process"):
        checkpoint.load_checkpoint(path, rank=0, world_size=2)
    checkpoint.save_checkpoint(tmp_path / "other.pt", {}, is_main=False)
    assert not (tmp_path / "other.pt").exists()


def test_batches_are_the_same_with_data_workers() -> None:
    from attnbench.data.sampling import train_loader

    def batches(workers: int, start: int) -> list[torch.Tensor]:
        keys = IterationBatches(4, 2, seed=1, start=start, stop=5)
        return list(train_loader(_Noisy(), keys, seed=1, num_workers=workers, pin_memory=False))

    inline = batches(0, 0)
    assert len(inline) == 5 and inline[0].shape == (2, 3)
    assert all(torch.equal(a, b) for a, b in zip(batches(2, 0), inline, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(batches(0, 3), inline[3:], strict=True))


@pytest.mark.parametrize("name", modules.available())
def test_every_head_trains_in_channels_last_under_bf16_autocast(name: str, monkeypatch) -> None:
    """The CUDA recipe's numerics (bf16 autocast, channels_last input), run on CPU.

    The CUDA kernels differ, but the dtype handling is the same code: every head must
    give a finite loss and finite gradients, and close to its float32 prediction.
    """
    from attnbench.experiment.config import BackboneConfig, HeadConfig, ModelConfig
    from attnbench.model.segmenter import build_model
    from attnbench.train import loop as train_mod

    monkeypatch.setattr(
        train_mod, "autocast", lambda device, amp: torch.autocast("cpu", dtype=torch.bfloat16)
    )
    cfg = ModelConfig(
        backbone=BackboneConfig(depth=18, output_stride=8, width=8),
        head=HeadConfig(channels=16, dropout=0.0),
    )
    torch.manual_seed(0)
    model = build_model(cfg, 5, name).to(memory_format=torch.channels_last)
    for p in model.parameters():  # zero-initialised scales would hide the module
        if p.requires_grad and p.abs().sum() == 0:
            torch.nn.init.constant_(p, 0.5)
    images = torch.randn(2, 3, 40, 40).contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 5, (2, 40, 40))
    model.eval()
    with torch.no_grad():
        reference = model(images.contiguous())["out"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(images)["out"]
    assert low.dtype == torch.bfloat16
    assert torch.allclose(low.float(), reference, atol=0.1 * reference.abs().max().item())
    model.train()
    recipe = SimpleNamespace(train=SimpleNamespace(lr=0.01, momentum=0.9, weight_decay=0.0))
    opt = build_optimizer(model, recipe)  # type: ignore[arg-type]
    loss = train_one_iteration(model, opt, images, labels, lr=0.01, aux_weight=0.4, amp=True)
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_a_device_copy_without_room_falls_back_to_the_same_batches(monkeypatch, capsys) -> None:
    from attnbench.data.probes import ProbeTask
    from attnbench.data.transforms import SegTransform
    from attnbench.train import loop

    dataset = ProbeTask("train", size=8, image_size=16, transform=SegTransform(flip=True))
    cfg = SimpleNamespace(
        train=SimpleNamespace(batch_size=2, iterations=4), data=SimpleNamespace(num_workers=0)
    )
    run = SimpleNamespace(
        cfg=cfg, seed=3, dist=DistInfo(), device=torch.device("cpu"), channels_last=False
    )
    resident = list(loop.device_batches(run, dataset, 1, resident=True))

    def no_room(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(loop, "ResidentBatches", no_room)
    streamed = list(loop.device_batches(run, dataset, 1, resident=True))
    assert "no room on the device" in capsys.readouterr().out
    assert len(streamed) == len(resident) == 3
    for (images, labels), (r_images, r_labels) in zip(streamed, resident, strict=True):
        assert torch.equal(images, r_images) and torch.equal(labels, r_labels)


def test_on_a_cpu_a_small_generated_set_is_held_in_memory_and_a_large_one_streamed(
    monkeypatch,
) -> None:
    from attnbench.data import device_batches as held
    from attnbench.data.probes import ProbeTask
    from attnbench.data.transforms import SegTransform
    from attnbench.train import loop

    dataset = ProbeTask("train", size=8, image_size=16, transform=SegTransform(flip=True))
    cfg = SimpleNamespace(
        train=SimpleNamespace(batch_size=2, iterations=4), data=SimpleNamespace(num_workers=0)
    )
    run = SimpleNamespace(
        cfg=cfg, seed=3, dist=DistInfo(), device=torch.device("cpu"), channels_last=False
    )
    chosen = loop.device_batches(run, dataset, 0)
    assert isinstance(chosen, held.ResidentBatches)
    held.release_device_copy()
    # 8 images of 16 px with their labels take 8 * 16 * 16 * 13 bytes: one byte short.
    monkeypatch.setattr(held, "RESIDENT_CPU_BYTES", 8 * 16 * 16 * 13 - 1)
    streamed = loop.device_batches(run, dataset, 0)
    assert not isinstance(streamed, held.ResidentBatches)
    pairs = list(zip(streamed, chosen, strict=True))
    assert len(pairs) == 4
    for (images, labels), (r_images, r_labels) in pairs:
        assert torch.equal(images, r_images) and torch.equal(labels, r_labels)
