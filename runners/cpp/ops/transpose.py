"""Transpose of the per-sample axes (the batch axis must stay first: perm[0] == 0).

Output-order loops read the input through permuted strides; adjacent axes that stay adjacent
and in order are merged first, so e.g. (N, C, H, W) -> (N, C, W, H) is a loop over C of 2-D
transposes and an identity permutation is one contiguous copy.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported, per_sample_shape


def _merge(shape: tuple[int, ...], perm: list[int]) -> tuple[list[int], list[int]]:
    """Merge runs of input axes that stay consecutive in the output; returns (merged input
    shape, merged permutation). Size-1 axes are dropped (they move nothing)."""
    kept = [axis for axis in perm if shape[axis] != 1]
    groups: list[list[int]] = []  # runs of input axes, in output order
    for axis in kept:
        if groups and groups[-1][-1] + 1 == axis:
            groups[-1].append(axis)
        else:
            groups.append([axis])
    # groups in input order give the merged input shape
    order = sorted(range(len(groups)), key=lambda g: groups[g][0])
    merged_shape = [int(np.prod([shape[a] for a in groups[g]], dtype=np.int64)) for g in order]
    position = {g: i for i, g in enumerate(order)}
    merged_perm = [position[g] for g in range(len(groups))]
    return merged_shape, merged_perm


@emits("Transpose")
def emit_transpose(node: ir.Node, ctx: EmitContext) -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = per_sample_shape(node, ctx, "transposing")
    rank = len(shape) + 1
    perm = node.attr("perm")
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    perm = [p + rank if p < 0 else p for p in perm]
    if sorted(perm) != list(range(rank)):
        raise unsupported(node, f"perm {perm} is not a permutation of the {rank} axes")
    if perm[0] != 0:
        raise unsupported(node, f"perm {perm} moves the batch axis 0; generated C++ keeps the batch first")
    sample_perm = [p - 1 for p in perm[1:]]
    size = ctx.value(y).size
    dims, order = _merge(shape, sample_perm)
    if len(order) <= 1 or order == sorted(order):  # nothing moves: a copy
        return f"std::memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, sizeof(float) * nb * {size});"
    strides = [int(np.prod(dims[i + 1:], dtype=np.int64)) for i in range(len(dims))]
    loops = "".join(f"for (int64_t i{k} = 0; i{k} < {dims[axis]}; ++i{k}) " for k, axis in enumerate(order))
    source = " + ".join(f"i{k} * {strides[axis]}" if strides[axis] != 1 else f"i{k}" for k, axis in enumerate(order))
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* __restrict xn = x + n * {size};
  float* __restrict yn = y + n * {size};
  int64_t o = 0;
  {loops}yn[o++] = xn[{source}];
}}"""
