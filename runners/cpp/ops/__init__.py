"""Operator emitters: one module per operator or small family.

An emitter is a pure function `emit(node: ir.Node, ctx: EmitContext) -> str` (runners/cpp/context.py) returning C++ statements that compute the
node's outputs for the `nb` samples of the current tile. Every batched tensor is contiguous with
the batch first, so a tensor's tile pointer `ctx.ptr(name)` plus `n * value.size` is sample n.
An emitter refuses what it cannot do with `unsupported(node, why)`. To add an operator, copy
`_template.py`, fill in the three steps, and import the module below.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.errors import UnsupportedModelError

Emitter = Callable[[ir.Node, EmitContext], str]
EMITTERS: dict[str, Emitter] = {}
# Ops whose output is the input's buffer re-read with another shape (all tensors are contiguous).
ALIASING_OPS = {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def emits(*ops: str) -> Callable[[Emitter], Emitter]:
    def register(function: Emitter) -> Emitter:
        for op in ops:
            if op in EMITTERS:
                raise RuntimeError(f"two emitters for {op}")
            EMITTERS[op] = function
        return function

    return register


def unsupported(node: ir.Node, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(f"cpp: {node.op} node {node.name!r}: {why}")


def per_sample_shape(node: ir.Node, ctx: EmitContext, doing: str) -> tuple[int, ...]:
    """The per-sample shape of the node's first input, which must be batched: the IR folds an
    operator on constants, so a constant reaching an emitter is a bug worth naming."""
    value = ctx.value(node.inputs[0])
    if not value.batched:
        raise unsupported(node, f"{doing} a constant should have been folded")
    return tuple(value.shape)


def pairwise_sum(terms: list[str]) -> str:
    """C++ sum of the expressions `terms` as a balanced tree: log2 additions deep instead of one
    after the other (the split-K chains of a dense layer, a softmax's vectors)."""
    while len(terms) > 1:
        terms = [f"({terms[i]} + {terms[i + 1]})" if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def c_float(value: float) -> str:
    """Exact C++ literal of a float32 value (hex float), including inf and nan."""
    value = float(np.float32(value))
    if math.isnan(value):
        return "__builtin_nanf(\"\")"
    if math.isinf(value):
        return "__builtin_huge_valf()" if value > 0 else "-__builtin_huge_valf()"
    return "0.0f" if value == 0 and math.copysign(1, value) > 0 else f"{value.hex()}f"


def supported_ops() -> set[str]:
    """Ops with an emitter, plus those the IR removes or folds: shape arithmetic (Shape, Gather,
    Cast, ... on values known but for the batch size) is folded; the same ops on activations are
    refused by the IR naming the node."""
    return set(EMITTERS) | ALIASING_OPS | ir.REMOVED_OPS | ir.SHAPE_VALUE_OPS | {"Constant"}


# Register the emitters (imported for their side effect).
from yukti.runners.cpp.ops import elementwise, gemm, softmax, shape, transpose, concat, reduce, conv, pool, batchnorm  # noqa: E402,F401
from yukti.runners.cpp.ops import logical, indexing, layernorm  # noqa: E402,F401
