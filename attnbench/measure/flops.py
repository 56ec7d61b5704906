"""Multiply-accumulate counting that names every op it does not understand.

Convention: everything is in MACs (one fused multiply-add = 1; FLOPs = 2 * MACs),
for the inference graph (eval mode, no gradient), for the whole batch given.

- Convolutions, linear maps and matrix products (conv, mm, bmm, matmul, addmm,
  baddbmm, linear, einsum): one MAC per multiply-accumulate; a bias or a `beta * C`
  term is folded into the accumulation and not counted separately.
- scaled_dot_product_attention: its two matrix products (L*S*E + L*S*Ev per batch and
  head) under the op's own name, plus its softmax (3 per score) and the scaling of
  the queries (1 per query element, L*E) under "softmax" and "mul": the same as the
  explicit form, which scales the queries before their product with the keys.
- softmax / log_softmax: 3 per element (exp, accumulate into the sum, divide); the
  max subtracted for numerical range is an implementation detail and not counted.
- Elementwise arithmetic, activations, comparisons and selections (add, mul, div,
  exp, relu, clamp, where, masked_fill, ...): 1 per output element.
- Reductions (sum, mean, amax, max over a dim, vector norms, ...): 1 per input
  element; var / std: 2.
- Normalisation: batch_norm in eval mode is a fused scale-and-shift, 1 per element;
  in training mode, and group/layer/instance norm, 4 per element (two statistics,
  normalise, affine).
- Pooling: max/avg pool 1 per window element (kernel area per output element);
  adaptive pools 1 per input element. Bilinear upsampling 4 per output element
  (a weighted sum of four neighbours); nearest upsampling is a copy, 0.
- Dropout: 0 in eval mode (the identity), 1 per element in training mode.
- Layout and creation ops (view, permute, cat, pad, slice, copy, zeros, ...): 0.

Any other op that the trace meets is reported in `MacCount.unsupported` rather than
silently counted as zero; fvcore's own ignore list is checked against the tables
below by the tests, so no computing op can hide there.

`flop_counter_count` is the independent cross-check: torch.utils.flop_counter,
which sees only matrix products and convolutions (forward and, optionally,
backward) and reports FLOPs; it is divided by 2 here. It counts
scaled_dot_product_attention only on the GPU kernels, so on the CPU that op is
reported as uncovered.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

# Names (as they appear in MacCount.by_op) of the matrix products and convolutions.
MATRIX_OPS: frozenset[str] = frozenset({
    "conv", "mm", "bmm", "matmul", "addmm", "baddbmm", "addbmm", "linear", "einsum", "mv",
    "dot", "scaled_dot_product_attention",
})  # fmt: skip
ELEMENTWISE_OPS: tuple[str, ...] = (
    "add", "sub", "rsub", "mul", "div", "neg", "abs", "reciprocal", "pow", "sqrt",
    "rsqrt", "exp", "log", "log1p", "expm1", "square", "sign", "lerp", "addcmul",
    "addcdiv", "relu", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh",
    "hardtanh", "hardsigmoid", "hardswish", "softplus", "clamp", "clamp_min",
    "clamp_max", "maximum", "minimum", "where", "masked_fill", "eq", "ne", "lt", "le",
    "gt", "ge", "logical_and", "logical_or", "logical_not", "bitwise_not", "__and__",
    "__or__", "floor", "ceil", "round", "floor_divide", "remainder", "nan_to_num",
)  # fmt: skip
REDUCTION_OPS: dict[str, int] = {
    "sum": 1, "mean": 1, "amax": 1, "amin": 1, "max": 1, "min": 1, "argmax": 1,
    "argmin": 1, "norm": 1, "linalg_vector_norm": 1, "frobenius_norm": 1, "prod": 1,
    "cumsum": 1, "logsumexp": 3, "var": 2, "std": 2, "var_mean": 2, "std_mean": 2,
}  # fmt: skip
SOFTMAX_COST = 3
# Layout, copy and creation ops: no arithmetic. Checked against fvcore's own ignore list.
ZERO_COST_OPS: tuple[str, ...] = (
    "Int", "ScalarImplicit", "size", "numel", "dim", "view", "view_as", "reshape",
    "reshape_as", "flatten", "unflatten", "squeeze", "unsqueeze", "permute", "transpose",
    "t", "movedim", "contiguous", "clone", "copy", "detach", "alias", "lift_fresh",
    "expand", "expand_as", "repeat", "repeat_interleave", "cat", "stack", "chunk", "split",
    "split_with_sizes", "tensor_split", "unbind", "narrow", "select", "slice", "index",
    "index_select", "gather", "scatter", "index_put", "nonzero", "roll", "flip", "pad",
    "constant_pad_nd", "reflection_pad2d", "replication_pad2d", "im2col", "unfold",
    "pixel_shuffle", "pixel_unshuffle", "to", "type_as", "float", "half", "zeros", "ones",
    "empty", "full", "zeros_like", "ones_like", "empty_like", "full_like", "new_zeros",
    "new_ones", "new_empty", "new_full", "arange", "eye", "linspace", "scalar_tensor",
    "tensor", "fill", "zero", "tril", "triu", "diag", "diag_embed", "diagonal",
    "upsample_nearest2d", "meshgrid", "broadcast_tensors", "one_hot",
)  # fmt: skip

Handle = Callable[[list[Any], list[Any]], Counter]


@dataclass(frozen=True)
class MacCount:
    """MACs of one forward pass: total, per op name, and the ops no handle covered."""

    total: int
    by_op: dict[str, int] = field(default_factory=dict)
    unsupported: dict[str, int] = field(default_factory=dict)

    @property
    def matrix(self) -> int:
        """The part spent in convolutions and matrix products."""
        return sum(v for k, v in self.by_op.items() if k in MATRIX_OPS)

    @property
    def other(self) -> int:
        """The lower-order part: softmax, normalisation, elementwise, reductions."""
        return self.total - self.matrix


@dataclass(frozen=True)
class CounterCount:
    """torch.utils.flop_counter's figure in MACs, and the matrix ops it did not cover."""

    macs: int
    uncovered: tuple[str, ...]


# -- helpers on torch._C.Value ------------------------------------------------------


def _shape(value: Any) -> list[int] | None:
    if value.isCompleteTensor():
        return list(value.type().sizes())
    return None


def _numel(value: Any) -> int:
    shape = _shape(value)
    return 0 if shape is None else math.prod(shape)


def _const(value: Any) -> Any:
    return value.toIValue()


def _per_output(cost: float) -> Callable[[str], Handle]:
    def make(name: str) -> Handle:
        def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
            n = _numel(outputs[0]) if outputs else 0
            if n == 0 and inputs:  # e.g. an op whose output type the tracer left open
                n = _numel(inputs[0])
            return Counter({name: int(cost * n)})

        return handle

    return make


def _per_input(cost: float) -> Callable[[str], Handle]:
    def make(name: str) -> Handle:
        def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
            return Counter({name: int(cost * _numel(inputs[0]))})

        return handle

    return make


def _zero(inputs: list[Any], outputs: list[Any]) -> Counter:
    return Counter()


# -- matrix products ---------------------------------------------------------------


def _contracting(name: str, left: int) -> Handle:
    """Output elements times the contracted length (the left operand's last dim)."""

    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        a = _shape(inputs[left])
        return Counter({name: _numel(outputs[0]) * (a[-1] if a else 0)})

    return handle


def _linear(inputs: list[Any], outputs: list[Any]) -> Counter:
    w = _shape(inputs[1])
    return Counter({"linear": _numel(outputs[0]) * w[-1]})


def _conv(inputs: list[Any], outputs: list[Any]) -> Counter:
    x, w, out = _shape(inputs[0]), _shape(inputs[1]), _shape(outputs[0])
    transposed = len(inputs) >= 12 and bool(_const(inputs[6]))
    spatial = (x if transposed else out)[2:]
    return Counter({"conv": x[0] * math.prod(w) * math.prod(spatial)})


def _einsum(inputs: list[Any], outputs: list[Any]) -> Counter:
    equation = str(_const(inputs[0])).replace(" ", "")
    operands = [_shape(v) for v in inputs[1].node().inputs()]
    lhs = equation.split("->")[0].split(",")
    if len(operands) != 2 or "." in equation:
        from fvcore.nn.jit_handles import einsum_flop_jit

        return Counter({"einsum": int(einsum_flop_jit(inputs, outputs))})
    sizes: dict[str, int] = {}
    for letters, shape in zip(lhs, operands, strict=True):
        sizes.update(zip(letters, shape, strict=True))
    # Two operands: each output element accumulates over the contracted letters.
    return Counter({"einsum": math.prod(sizes.values())})


def _sdpa(inputs: list[Any], outputs: list[Any]) -> Counter:
    q, k, v = (_shape(t) for t in inputs[:3])
    batch = math.prod(q[:-2])
    length, source = q[-2], k[-2]
    scores = batch * length * source
    return Counter(
        {
            "scaled_dot_product_attention": scores * q[-1] + scores * v[-1],
            "softmax": SOFTMAX_COST * scores,
            "mul": batch * length * q[-1],
        }
    )


# -- normalisation, pooling, resampling, dropout ----------------------------------


def _batch_norm(inputs: list[Any], outputs: list[Any]) -> Counter:
    training = bool(_const(inputs[5]))
    return Counter({"batch_norm": (4 if training else 1) * _numel(inputs[0])})


def _int_list(value: Any) -> list[int] | None:
    """A traced int-list argument: a constant, or a ListConstruct of constants."""
    ivalue = _const(value)
    if ivalue is None and value.node().kind() == "prim::ListConstruct":
        ivalue = [_const(v) for v in value.node().inputs()]
    if isinstance(ivalue, int):
        return [ivalue, ivalue]
    if isinstance(ivalue, list | tuple) and all(isinstance(v, int) for v in ivalue):
        return list(ivalue)
    return None


def _window_pool(name: str) -> Handle:
    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        kernel = _int_list(inputs[1])
        out = _numel(outputs[0])
        # Without a readable kernel, every input element is visited once (stride = kernel).
        visits = out * math.prod(kernel) if kernel else _numel(inputs[0])
        return Counter({name: visits})

    return handle


def _dropout(name: str, train_index: int) -> Handle:
    def handle(inputs: list[Any], outputs: list[Any]) -> Counter:
        train = bool(_const(inputs[train_index]))
        return Counter({name: _numel(outputs[0]) if train else 0})

    return handle


def build_handles() -> dict[str, Handle]:
    """aten op name -> fvcore handle, for every op this module knows how to count."""
    handles: dict[str, Handle] = {}

    def put(op: str, handle: Handle) -> None:
        handles[f"aten::{op}"] = handle
        if not op.startswith("_"):
            handles[f"aten::{op}_"] = handle

    for op in ELEMENTWISE_OPS:
        put(op, _per_output(1)(op))
    for op, cost in REDUCTION_OPS.items():
        put(op, _per_input(cost)(op))
    for op in ("softmax", "log_softmax", "_softmax", "_log_softmax"):
        put(op, _per_input(SOFTMAX_COST)(op.lstrip("_")))
    for op in ("group_norm", "layer_norm", "instance_norm"):
        put(op, _per_input(4)(op))
    for op in ZERO_COST_OPS:
        put(op, _zero)
    put("batch_norm", _batch_norm)
    put("_convolution", _conv)
    put("conv2d", _conv)
    put("conv1d", _conv)
    put("linear", _linear)
    put("einsum", _einsum)
    put("scaled_dot_product_attention", _sdpa)
    for op in ("mm", "bmm", "matmul", "mv", "dot"):
        put(op, _contracting(op, 0))
    for op in ("addmm", "baddbmm", "addbmm"):
        put(op, _contracting(op, 1))
    for op in ("max_pool2d", "avg_pool2d", "max_pool2d_with_indices"):
        put(op, _window_pool(op))
    for op in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
        put(op, _per_input(1)(op))
    put("upsample_bilinear2d", _per_output(4)("upsample_bilinear2d"))
    put("dropout", _dropout("dropout", 2))
    put("feature_dropout", _dropout("feature_dropout", 2))
    return handles


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """fvcore logs and the tracer warns about things the caller gets as data instead."""
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the block, then every submodule's own flag restored."""
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for m, flag in flags.items():
            m.train(flag)


def count_macs(model: nn.Module, *inputs: torch.Tensor) -> MacCount:
    """MACs of one inference forward of `model(*inputs)` (eval mode, no gradient).

    Traces with torch.jit through fvcore; the model's train/eval flags are restored.
    """
    with _quiet(), eval_mode(model), torch.no_grad():
        from fvcore.nn import FlopCountAnalysis  # its import scripts functions: deprecated

        analysis = FlopCountAnalysis(model, inputs)
        analysis.set_op_handle(**build_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.tracer_warnings("none")
        by_op = {k: round(v) for k, v in analysis.by_operator().items() if v}
        unsupported = dict(analysis.unsupported_ops())
    return MacCount(total=sum(by_op.values()), by_op=by_op, unsupported=unsupported)


class _OpRecorder(TorchDispatchMode):
    """Notes the overload packet of every aten op dispatched below autograd."""

    seen: set[Any]

    def __enter__(self) -> _OpRecorder:
        self.seen = set()
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        self.seen.add(func.overloadpacket)
        return func(*args, **(kwargs or {}))


_MATRIX_HINTS = ("mm", "conv", "attention", "matmul", "linear", "einsum", "dot")


def flop_counter_count(
    model: nn.Module, *inputs: torch.Tensor, backward: bool = False
) -> CounterCount:
    """torch.utils.flop_counter's count / 2, forward only (eval, no grad) or forward +
    backward (current mode, loss = mean of the output, gradients reset to None after);
    with the matrix-like ops it met but has no formula for."""
    counter = FlopCounterMode(display=False)
    recorder = _OpRecorder()
    ctx = contextlib.nullcontext() if backward else eval_mode(model)
    with ctx, counter, recorder:
        if backward:
            with torch.enable_grad():
                model(*inputs).float().mean().backward()
            model.zero_grad(set_to_none=True)
            for t in inputs:
                t.grad = None
        else:
            with torch.no_grad():
                model(*inputs)
    registry = counter.flop_registry
    uncovered = sorted(
        str(op)
        for op in recorder.seen
        if op not in registry
        and any(h in str(op).split(".")[-1] for h in _MATRIX_HINTS)
        and not str(op).split(".")[-1].startswith("upsample")  # bilinear: interpolation
    )
    return CounterCount(macs=counter.get_total_flops() // 2, uncovered=tuple(uncovered))


__all__ = [
    "MATRIX_OPS",
    "CounterCount",
    "MacCount",
    "build_handles",
    "count_macs",
    "eval_mode",
    "flop_counter_count",
]
