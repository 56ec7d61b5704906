"""Contract tests that every registered context module must pass."""

from __future__ import annotations

import ast
import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import modules

NAMES = list(modules.available())
SIX_AND_CONTROLS = ["none", "nonlocal", "a2", "ccnet", "isa", "danet", "ema", "pool"]
# Modules whose paper initialises a gate to zero (a BN scale, a scalar or a conv).
GATED = {"nonlocal", "a2", "ccnet", "danet", "ema", "ann", "dnl", "gc"}
GATED |= {"cgnl", "glore", "latentgnn"}
# Small settings keep the suite fast; everything not named here keeps its default.
KWARGS: dict[str, dict[str, object]] = {
    "ema": {"bases": 8},
    "ham": {"rank": 8},
    "latentgnn": {"latent_dim": 12},
    "psa": {"mask_size": (9, 9)},
}
MODULE_DIR = Path(modules.__file__).parent

# Training-mode BN refuses one value per channel, so (1, C, 1, 1) runs in eval mode only.
SHAPES = [
    ((2, 32, 13, 17), (True, False)),
    ((1, 16, 1, 1), (False,)),
    ((2, 16, 1, 1), (True, False)),
    ((2, 16, 9, 6), (True, False)),  # ISA pads 9 x 6 up to its block size
    ((1, 16, 1, 11), (True, False)),
]


def _build(name: str, channels: int = 16) -> nn.Module:
    torch.manual_seed(0)
    return modules.build(name, channels, **KWARGS.get(name, {}))


def _wake(module: nn.Module) -> nn.Module:
    """Give zero-initialised scales random values so that every path carries signal."""
    torch.manual_seed(1)
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and sub.weight is not None:
                sub.weight.fill_(1.0)
        for param in module.parameters():
            if param.numel() and not param.any():
                param.copy_(torch.randn_like(param) * 0.5)
    return module


def _frozen_names(module: nn.Module) -> set[str]:
    """Parameters the class declares frozen: an entry names a parameter or a submodule."""
    declared = type(module).FROZEN
    names = {n for n, _ in module.named_parameters()}
    matched = {n for n in names for entry in declared if n == entry or n.startswith(entry + ".")}
    for entry in declared:
        assert any(n == entry or n.startswith(entry + ".") for n in names), (
            f"FROZEN entry {entry!r} matches no parameter of {type(module).__name__}"
        )
    return matched


def test_available_lists_the_seven_modules_the_pool_control_then_the_zoo() -> None:
    assert modules.available()[:8] == SIX_AND_CONTROLS
    zoo = {"ann", "apc", "dm", "dnl", "gc", "ocr", "cgnl", "glore", "ham", "latentgnn", "psa"}
    assert set(modules.available()[8:]) == zoo


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(("shape", "modes"), SHAPES, ids=lambda v: str(v))
def test_shape_preserved_and_finite(name: str, shape: tuple[int, ...], modes) -> None:
    module = _wake(_build(name, shape[1]))
    x = torch.randn(shape)
    for training in modes:
        module.train(training)
        out = module(x)
        assert out.shape == x.shape, (name, training)
        assert out.dtype == x.dtype
        assert torch.isfinite(out).all(), (name, training)


@pytest.mark.parametrize("name", NAMES)
def test_every_trainable_parameter_gets_a_gradient(name: str) -> None:
    module = _wake(_build(name)).train()
    x = torch.randn(2, 16, 9, 11, requires_grad=True)
    out = module(x)
    (out * torch.randn_like(out)).sum().backward()
    assert x.grad is not None and x.grad.any()
    frozen = _frozen_names(module)
    for pname, param in module.named_parameters():
        if pname in frozen:
            continue
        assert param.grad is not None, f"{name}: {pname} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name}: {pname} has a non-finite gradient"
        assert param.grad.any(), f"{name}: {pname} got an all-zero gradient"


@pytest.mark.parametrize("name", NAMES)
def test_frozen_parameters_are_exactly_the_declared_ones(name: str) -> None:
    module = _build(name)
    assert isinstance(type(module).FROZEN, tuple)
    not_trained = {n for n, p in module.named_parameters() if not p.requires_grad}
    assert not_trained == _frozen_names(module)


@pytest.mark.parametrize("name", NAMES)
def test_eval_mode_samples_are_independent(name: str) -> None:
    module = _wake(_build(name)).eval()
    x = torch.randn(3, 16, 7, 10)
    with torch.no_grad():
        out = module(x)
        changed = x.clone()
        changed[1] = torch.randn(16, 7, 10) * 3
        out_changed = module(changed)
    torch.testing.assert_close(out_changed[0], out[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_changed[2], out[2], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(out_changed[1], out[1])


@pytest.mark.parametrize("name", NAMES)
def test_float64_forward_matches_float32(name: str) -> None:
    module = _wake(_build(name)).eval()
    double = copy.deepcopy(module).double()
    x = torch.randn(2, 16, 9, 6)
    with torch.no_grad():
        out32 = module(x)
        out64 = double(x.double())
    assert out64.dtype == torch.float64
    torch.testing.assert_close(out32.double(), out64, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", NAMES)
def test_macs_is_a_non_negative_int(name: str) -> None:
    module = _build(name)
    for height, width in [(13, 17), (1, 1), (9, 6), (64, 64)]:
        macs = module.macs(height, width)
        assert isinstance(macs, int) and not isinstance(macs, bool), (name, type(macs))
        assert macs >= 0
    if name == "none":
        assert module.macs(13, 17) == 0


EXPECTED_MAPS = {
    "none": {},
    "nonlocal": {"attention": 1},
    "a2": {"gather": "c_n", "distribute": "c_n"},
    "ccnet": {"criss_cross": 1},
    "isa": {"long_range": 1, "short_range": 1},
    "danet": {"position": 1, "channel": None},  # (B, C, C)
    "ema": {"responsibilities": "K"},
    "pool": {"mean": 1},
    "ann": {"attention": 1},
    "apc": {"affinity": 1},
    "dm": {},
    "dnl": {"pairwise": 1, "unary": 1},
    "gc": {"pooling": 1},
    "ocr": {"object": 1, "regions": "K"},
    "cgnl": {},
    "glore": {"projection": "K"},
    "ham": {"coefficients": "R"},
    "latentgnn": {"visible_to_latent": "d"},
    "psa": {"collect": 1, "distribute": 1},
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [False, True])
def test_attention_maps_shapes_and_no_side_effects(name: str, training: bool) -> None:
    module = _wake(_build(name)).train(training)
    x = torch.randn(2, 16, 9, 6)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    with torch.no_grad():
        before = module(x) if not training else None
        maps = module.attention_maps(x)
        module.attention_maps(x, (0, 5))
    assert set(maps) == set(EXPECTED_MAPS[name])
    for key, per_sample in EXPECTED_MAPS[name].items():
        att = maps[key]
        assert isinstance(att, torch.Tensor) and torch.isfinite(att).all()
        if per_sample is None:
            assert att.shape == (2, 16, 16), (name, key, att.shape)
        else:
            assert att.dim() == 4 and att.shape[0] == 2 and att.shape[2:] == (9, 6), (name, key)
            if per_sample == 1:
                assert att.shape[1] == 1, (name, key, att.shape)
    # A call for visualisation leaves every parameter and buffer (BN stats, EMA bases) as it was.
    for k, v in state.items():
        assert torch.equal(v, module.state_dict()[k]), f"{name}: attention_maps changed {k}"
    if not training:
        with torch.no_grad():
            assert torch.equal(module(x), before)


@pytest.mark.parametrize("name", NAMES)
def test_open_gate_opens_exactly_the_zero_initialised_gates(name: str) -> None:
    paper = _build(name).eval()
    opened = _build(name).eval()
    opened.open_gate()
    x = torch.randn(2, 16, 9, 6)
    with torch.no_grad():
        before, after = paper(x), opened(x)
    if name in GATED:
        assert not torch.allclose(before, after), f"{name}: open_gate changed nothing"
        # Their closed gate makes the block the identity.
        if name in ("nonlocal", "a2", "ccnet", "dnl", "gc", "cgnl", "glore", "latentgnn"):
            assert torch.equal(before, x)
            assert not torch.allclose(after, x)
    else:
        assert torch.equal(before, after), f"{name} has no gate, yet open_gate changed it"


@pytest.mark.parametrize("name", NAMES)
def test_gates_are_the_zero_initialised_parameters_that_open_gate_sets(name: str) -> None:
    module = _build(name)
    gates = module.gates()
    own = {id(p) for p in module.parameters()}
    assert all(id(gate) in own for gate in gates), f"{name}: a gate is not its parameter"
    if name not in GATED:
        assert gates == ()
        return
    assert gates and all(torch.count_nonzero(gate) == 0 for gate in gates), name
    module.open_gate()
    assert any(torch.count_nonzero(gate) > 0 for gate in module.gates()), name


def test_build_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError) as info:
        modules.build("transformer", 16)
    for name in NAMES:
        assert name in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_build_unknown_keyword_lists_valid_ones(name: str) -> None:
    with pytest.raises(ValueError) as info:
        modules.build(name, 16, no_such_option=1)
    for valid in modules.hyper_parameters(name):
        assert valid in str(info.value)


@pytest.mark.parametrize("path", sorted(MODULE_DIR.glob("*.py")), ids=lambda p: p.name)
def test_module_files_import_only_torch_and_stdlib(path: Path) -> None:
    allowed = set(sys.stdlib_module_names) | {"torch"}
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level > 0:
                assert path.name == "__init__.py", f"{path.name}: relative import"
                continue
            roots = [node.module.split(".")[0]]
        else:
            continue
        for root in roots:
            assert root in allowed, f"{path.name} imports {root}"


@pytest.mark.parametrize("name", NAMES)
def test_every_module_states_the_context_module_contract(name: str) -> None:
    """The Protocol's attributes are declared, and the maps it names are returned."""
    module = modules.build(name, 16, **KWARGS.get(name, {}))
    assert isinstance(module, modules.ContextModule)
    cls = type(module)
    declared = ("FROZEN", "MAIN_MAP", "MAIN_MAP_ARGMAX", "EXTRA_MAP", "EXTRA_MAP_COUNT")
    for attribute in (*declared, "EVAL_OVERRIDES"):
        assert attribute in vars(cls), f"{cls.__name__} does not declare {attribute}"
    maps = module.eval().attention_maps(torch.randn(1, 16, 6, 6), (2, 3))
    for key in (cls.MAIN_MAP, cls.EXTRA_MAP):
        assert key is None or key in maps, f"{name}: {key!r} not among {sorted(maps)}"
    assert (cls.EXTRA_MAP is None) == (cls.EXTRA_MAP_COUNT == 0)
    for attribute, replaced in cls.EVAL_OVERRIDES:
        assert hasattr(module, attribute), f"{name}: no attribute {attribute!r} to sweep"
        assert replaced in modules.hyper_parameters(name), f"{name}: no parameter {replaced!r}"
