"""EMAUnit against an independent float64 reference: EM loops, bases update, frozen conv1."""

from __future__ import annotations

import copy
import pathlib

import pytest
import torch
import torch.multiprocessing as mp
from torch.utils.flop_counter import FlopCounterMode

from modules.em_attention import EMAUnit

D = torch.float64
EPS = 1e-6


def _mat(conv: torch.nn.Conv2d) -> torch.Tensor:
    return conv.weight.detach().to(D)[:, :, 0, 0]


def _l2(t: torch.Tensor) -> torch.Tensor:
    return t / (EPS + t.norm(dim=0, keepdim=True))  # over C of (C, K)


def reference_em(
    m: EMAUnit, x: torch.Tensor, stages: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x~ (B, C, H, W), mu_T (B, C, K), z_T (B, N, K) from the SPEC, one sample at a time."""
    _, c, h, w = x.shape
    recs, mus, zs = [], [], []
    for xb in x.to(D):
        feat = _mat(m.conv1) @ xb.reshape(c, h * w) + m.conv1.bias.detach().to(D)[:, None]
        mu = m.mu[0].detach().to(D).clone()  # (C, K)
        for _ in range(stages):
            e = m.temperature * (feat.t() @ mu)  # (N, K)
            e = (e - e.max(dim=1, keepdim=True).values).exp()
            z = e / e.sum(dim=1, keepdim=True)  # responsibilities, sum over K is 1
            mu = feat @ (z / (EPS + z.sum(dim=0, keepdim=True)))  # (C, K)
            if m.l2_norm:
                mu = _l2(mu)
        recs.append((mu @ z.t()).reshape(c, h, w))
        mus.append(mu)
        zs.append(z)
    return torch.stack(recs), torch.stack(mus), torch.stack(zs)


def reference_out(m: EMAUnit, x: torch.Tensor, stages: int, train: bool) -> torch.Tensor:
    rec, _, _ = reference_em(m, x, stages)
    y = torch.einsum("oc,bchw->bohw", _mat(m.conv2), rec.clamp_min(0))
    if train:  # batch statistics, biased variance
        mean, var = y.mean(dim=(0, 2, 3)), y.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = m.bn.running_mean.to(D), m.bn.running_var.to(D)
    gamma, beta = m.bn.weight.detach().to(D), m.bn.bias.detach().to(D)
    y = (y - mean[:, None, None]) / torch.sqrt(var[:, None, None] + m.bn.eps)
    y = y * gamma[:, None, None] + beta[:, None, None]
    return (x.to(D) + y).clamp_min(0)


def reference_update(m_before: EMAUnit, batch_mean: torch.Tensor) -> torch.Tensor:
    """mu0 <- l2norm((1 - m) mu0 + m * l2norm(batch mean of mu_T)), (1, C, K)."""
    mom = m_before.momentum
    mixed = (1 - mom) * m_before.mu.to(D)[0] + mom * _l2(batch_mean.to(D))
    return _l2(mixed)[None]


def _randomised(channels: int = 8, **kw: object) -> EMAUnit:
    m = EMAUnit(channels, **kw).to(D)
    with torch.no_grad():  # BN gamma starts at 0: make the output depend on x~
        m.bn.weight.uniform_(0.5, 1.5)
        m.bn.bias.uniform_(-0.5, 0.5)
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


@pytest.mark.parametrize("stages", [1, 3])
@pytest.mark.parametrize("l2_norm", [True, False])
@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_eval_matches_float64_reference(stages: int, l2_norm: bool, temperature: float) -> None:
    torch.manual_seed(0)
    m = _randomised(bases=5, stages=stages, l2_norm=l2_norm, temperature=temperature).eval()
    x = torch.randn(2, 8, 4, 6, dtype=D)
    mu_before = m.mu.clone()
    torch.testing.assert_close(m(x), reference_out(m, x, stages, False), rtol=0, atol=1e-10)
    rec, _, z = reference_em(m, x, stages)
    torch.testing.assert_close(m.reconstruct(x), rec, rtol=0, atol=1e-10)
    resp = m.attention_maps(x)["responsibilities"]
    torch.testing.assert_close(resp, z.transpose(1, 2).reshape(2, 5, 4, 6), rtol=0, atol=1e-12)
    assert torch.equal(m.mu, mu_before)  # eval mode leaves the bases alone


def test_train_step_matches_reference_and_updates_bases() -> None:
    torch.manual_seed(1)
    m = _randomised(bases=4, stages=2).train()
    x = torch.randn(3, 8, 5, 5, dtype=D)
    before = copy.deepcopy(m)
    expected = reference_out(before, x, 2, True)
    _, mu_t, _ = reference_em(before, x, 2)
    out = m(x)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-10)
    assert not torch.equal(m.mu, before.mu)
    torch.testing.assert_close(m.mu, reference_update(before, mu_t.mean(0)), rtol=0, atol=1e-12)


def test_bases_norm_after_update() -> None:
    torch.manual_seed(2)
    m = EMAUnit(8, bases=6).to(D)
    torch.testing.assert_close(m.mu.norm(dim=1), torch.ones(1, 6, dtype=D), atol=1e-5, rtol=0)
    m.train()
    for _ in range(3):
        old = m.mu.clone()
        m(torch.randn(2, 8, 3, 4, dtype=D))
        assert not torch.equal(m.mu, old)
        torch.testing.assert_close(m.mu.norm(dim=1), torch.ones(1, 6, dtype=D), atol=1e-5, rtol=0)


def test_eval_stages_differ_from_train_stages() -> None:
    torch.manual_seed(3)
    m = _randomised(bases=4, stages=3).eval()
    x = torch.randn(2, 8, 4, 4, dtype=D)
    three = m(x)
    m.eval_stages = 1  # a plain attribute, set after construction
    one = m(x)
    assert not torch.allclose(one, three)
    fresh = EMAUnit(8, bases=4, stages=1).to(D).eval()
    fresh.load_state_dict(m.state_dict())
    torch.testing.assert_close(one, fresh(x), rtol=0, atol=1e-12)
    assert m.macs(4, 4) == fresh.macs(4, 4)
    # Training ignores eval_stages.
    a, b = copy.deepcopy(m).train(), copy.deepcopy(m).train()
    b.eval_stages = None
    torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)
    assert a.active_stages() == 3
    m.stages = 2
    m.eval_stages = None
    torch.testing.assert_close(m(x), reference_out(m, x, 2, False), rtol=0, atol=1e-10)


def test_conv1_frozen_and_gets_no_gradient() -> None:
    m = EMAUnit(8, bases=4)
    assert EMAUnit.FROZEN == ("conv1.weight", "conv1.bias")
    params = dict(m.named_parameters())
    assert all(not params[name].requires_grad for name in EMAUnit.FROZEN)
    with torch.no_grad():
        m.bn.weight.fill_(1.0)
    # Even when unfrozen, no gradient reaches conv1: the EM path carries none (official code).
    m.conv1.requires_grad_(True)
    x = torch.randn(2, 8, 3, 3, requires_grad=True)
    m(x).square().sum().backward()
    assert m.conv1.weight.grad is None and m.conv1.bias.grad is None
    assert m.conv2.weight.grad is not None and m.conv2.weight.grad.abs().sum() > 0


def test_attention_maps_have_no_side_effects() -> None:
    torch.manual_seed(4)
    m = _randomised(bases=6).train()
    x = torch.randn(2, 8, 3, 5, dtype=D)
    mu = m.mu.clone()
    maps = m.attention_maps(x, (1, 1))
    assert set(maps) == {"responsibilities"}
    assert maps["responsibilities"].shape == (2, 6, 3, 5)
    torch.testing.assert_close(maps["responsibilities"].sum(1), torch.ones(2, 3, 5, dtype=D))
    assert torch.equal(m.mu, mu)
    m.eval()
    before = m(x)
    m.attention_maps(x)
    torch.testing.assert_close(m(x), before, rtol=0, atol=0)


def test_autocast_keeps_em_in_float32() -> None:
    m = EMAUnit(8, bases=4).eval()
    x = torch.randn(2, 8, 4, 4) * 50  # large energies
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = m(x)
    assert torch.isfinite(out).all()


def test_autocast_runs_conv1_in_bf16_and_the_em_in_float32() -> None:
    # No float32 convolution in a bf16 network (cudnn.benchmark's FFT trials for one
    # took gigabytes of workspace); the EM iterations still run in float32.
    m = EMAUnit(8, bases=4).train()
    seen: dict[str, torch.dtype] = {}
    m.conv1.register_forward_hook(lambda mod, args, out: seen.update(conv1=out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _, mu, z = m._em(torch.randn(2, 8, 4, 4))
    assert seen["conv1"] == torch.bfloat16
    assert mu.dtype == torch.float32 and z.dtype == torch.float32


def test_macs_match_flop_counter() -> None:
    m = EMAUnit(16, bases=5, stages=3, eval_stages=2).eval()
    x = torch.randn(1, 16, 5, 7)
    with FlopCounterMode(display=False) as counter:
        m(x)
    assert counter.get_total_flops() == 2 * m.macs(5, 7)
    assert m.macs(5, 7) == 2 * 35 * 16 * 16 + 2 * 2 * 35 * 5 * 16 + 35 * 5 * 16
    assert m.train().macs(5, 7) == 2 * 35 * 16 * 16 + 3 * 2 * 35 * 5 * 16 + 35 * 5 * 16


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # identical initial bases on every rank
        m = EMAUnit(8, bases=4, stages=2).to(D).train()
        gen = torch.Generator().manual_seed(100 + rank)  # different data per rank
        x = torch.randn(3, 8, 4, 5, generator=gen, dtype=D)
        mu0 = m.mu.clone()
        _, mu_t, _ = reference_em(m, x, 2)
        m(x)
        result = {"mu0": mu0, "mu": m.mu.clone(), "mean": mu_t.mean(0)}
        torch.save(result, pathlib.Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_distributed_update_averages_over_ranks(tmp_path: pathlib.Path) -> None:
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert torch.equal(r0["mu0"], r1["mu0"])
    assert not torch.allclose(r0["mean"], r1["mean"])  # the ranks saw different data
    assert torch.equal(r0["mu"], r1["mu"])
    mom = 0.1
    expected = _l2((1 - mom) * r0["mu0"][0] + mom * _l2((r0["mean"] + r1["mean"]) / 2))[None]
    torch.testing.assert_close(r0["mu"], expected, rtol=0, atol=1e-12)


def test_bn_momentum_sets_the_output_bn_like_the_official_code() -> None:
    assert EMAUnit(8, bases=4).bn.momentum == 0.1
    m = EMAUnit(8, bases=4, bn_momentum=3e-4).to(D).train()
    assert m.bn.momentum == 3e-4
    torch.manual_seed(8)
    x = torch.randn(2, 8, 3, 4, dtype=D)
    rec = reference_em(copy.deepcopy(m), x, 3)[0].clamp_min(0)
    batch_mean = torch.einsum("oc,bchw->o", _mat(m.conv2), rec) / (2 * 3 * 4)
    m(x)
    torch.testing.assert_close(m.bn.running_mean, 3e-4 * batch_mean, rtol=0, atol=1e-12)
