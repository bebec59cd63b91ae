"""MatMul with numpy's semantics where it is not `x @ W` with a weight matrix (ops/gemm.py keeps that
fast path): two activations (attention's q @ k^T and weights @ v), or stacks of constant matrices.

Per sample, the leading dimensions of both operands broadcast (numpy rules, a constant being the same
for every sample) and each pair of matrices is multiplied as rows of axpy updates: y[i, :] += a[i, k]
* b[k, :] over k in order. The inner loop runs along contiguous output columns, so it vectorizes
without -ffast-math (no floating-point reduction to reorder), and every output sums its k terms in
the same order whatever the flags. Matrices here are small (a particle cloud, a few heads).
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import unsupported
from yukti.runners.cpp.ops.elementwise import _strides


def _operand(node: ir.Node, ctx: EmitContext, name: str, left: bool) -> tuple[str, int, tuple[int, ...], tuple[int, int], bool]:
    """(C pointer, per-sample stride (0 for a constant), leading dims per sample, matrix dims, was a vector)."""
    value = ctx.value(name)
    if value.batched:
        shape = tuple(value.shape)
        if len(shape) < 2:
            raise unsupported(node, f"{'A' if left else 'B'} of shape {value.full_shape} would make the batch a matrix "
                                    "dimension; generated C++ keeps samples independent")
        return ctx.ptr(name), value.size, shape[:-2], (shape[-2], shape[-1]), False
    array = np.asarray(value.const, np.float32)
    if array.ndim == 0:
        raise unsupported(node, f"constant {name} is a scalar; MatMul needs at least a vector")
    vector = array.ndim == 1
    if vector:  # numpy: a 1-D left operand is a row, a 1-D right one a column; the unit axis is dropped after
        array = array.reshape((1, -1) if left else (-1, 1))
    pointer = ctx.const_array(np.ascontiguousarray(array), f"{node.name}_{'A' if left else 'B'}")
    return pointer, 0, tuple(array.shape[:-2]), (array.shape[-2], array.shape[-1]), vector


def emit_batched_matmul(node: ir.Node, ctx: EmitContext) -> str:
    """C++ for MatMul(A, B) with numpy semantics per sample; at least one operand is batched."""
    a, b = node.inputs[:2]
    y = node.outputs[0]
    if not ctx.value(a).batched and not ctx.value(b).batched:
        raise unsupported(node, "a product of two constants should have been folded")
    a_ptr, a_step, a_lead, (m, k), a_vector = _operand(node, ctx, a, left=True)
    b_ptr, b_step, b_lead, (k_b, p), b_vector = _operand(node, ctx, b, left=False)
    if k != k_b:
        raise unsupported(node, f"inner dimensions differ ({k} and {k_b})")
    batched_leads = [lead for lead, step in ((a_lead, a_step), (b_lead, b_step)) if step]
    per_sample = max(len(lead) for lead in batched_leads)
    if any(len(lead) != per_sample for lead in batched_leads):
        # numpy aligns leading dims from the right: the batch axis of one would meet another axis of the other
        raise unsupported(node, f"A {ctx.value(a).full_shape} and B {ctx.value(b).full_shape} have different ranks; "
                                "their batch axes would not line up")

    def per_sample_lead(lead: tuple[int, ...], step: int, name: str) -> tuple[int, ...]:
        if step or len(lead) <= per_sample:
            return lead
        extra, rest = lead[:len(lead) - per_sample], lead[len(lead) - per_sample:]
        if any(d != 1 for d in extra):  # would broadcast against the batch: one constant per sample index
            raise unsupported(node, f"constant {name} of shape {ctx.value(name).full_shape} would broadcast over the batch")
        return rest

    a_lead, b_lead = per_sample_lead(a_lead, a_step, a), per_sample_lead(b_lead, b_step, b)
    try:
        lead = tuple(np.broadcast_shapes(a_lead, b_lead))
    except ValueError:
        raise unsupported(node, f"leading dimensions {a_lead} and {b_lead} do not broadcast") from None
    expected = (*lead, *(() if a_vector else (m,)), *(() if b_vector else (p,)))
    out_shape = tuple(ctx.value(y).shape)
    if expected != out_shape:
        raise unsupported(node, f"computes per-sample shape {expected}, but the graph says {out_shape}")
    a_strides, b_strides = _strides(a_lead, lead), _strides(b_lead, lead)
    out_strides = _strides(lead, lead)
    loops = "".join(f"for (int64_t i{d} = 0; i{d} < {size}; ++i{d}) " for d, size in enumerate(lead))

    def offset(strides: list[int], matrix: int) -> str:
        terms = [f"i{d} * {s * matrix}" for d, s in enumerate(strides) if s]
        return " + ".join(terms) or "0"

    relu = node.attr("fused_activation", "") == "Relu"  # codegen.fuse_activations: NaN stays NaN, as in ONNX
    activation = f"\n      for (int64_t j = 0; j < {p}; ++j) yr[j] = yr[j] < 0.0f ? 0.0f : yr[j];" if relu else ""
    return f"""
const float* a = {a_ptr};
const float* b = {b_ptr};
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* an = a + n * {a_step};
  const float* bn = b + n * {b_step};
  float* yn = y + n * {ctx.value(y).size};
  {loops}{{
    const float* __restrict am = an + {offset(a_strides, m * k)};
    const float* __restrict bm = bn + {offset(b_strides, k * p)};
    float* __restrict ym = yn + {offset(out_strides, m * p)};
    for (int64_t i = 0; i < {m}; ++i) {{
      float* __restrict yr = ym + i * {p};
      for (int64_t j = 0; j < {p}; ++j) yr[j] = 0.0f;
      for (int64_t t = 0; t < {k}; ++t) {{
        const float av = am[i * {k} + t];
        const float* __restrict br = bm + t * {p};
        for (int64_t j = 0; j < {p}; ++j) yr[j] += av * br[j];
      }}{activation}
    }}
  }}
}}"""
