"""Gemm and MatMul with a constant right-hand side: y = x W + b.

Weights are stored transposed to (K, N) so the inner loop is an axpy over the N outputs: it
vectorizes without -ffast-math (no floating-point reduction to reorder), and a tile of samples
reuses W from L1. alpha and beta are folded into W and b at generation time.
"""

from __future__ import annotations

import numpy as np

from runners.cpp.ops import emits, unsupported


def _dense(ctx, node, x: str, y: str, weight: np.ndarray, bias: np.ndarray | None, rows: int) -> str:  # noqa: ANN001
    k, n = weight.shape
    w = ctx.const_array(weight, f"{node.name}_W")
    init = f"for (int64_t j = 0; j < {n}; ++j) yr[j] = {ctx.const_array(bias, node.name + '_b')}[j];" if bias is not None \
        else f"for (int64_t j = 0; j < {n}; ++j) yr[j] = 0.0f;"
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t r = 0; r < nb * {rows}; ++r) {{
  const float* xr = x + r * {k};
  float* __restrict yr = y + r * {n};
  {init}
  for (int64_t k = 0; k < {k}; ++k) {{
    const float xk = xr[k];
    const float* __restrict wk = {w} + k * {n};
    for (int64_t j = 0; j < {n}; ++j) yr[j] += xk * wk[j];
  }}
}}"""


@emits("Gemm")
def emit_gemm(node, ctx) -> str:  # noqa: ANN001
    a, b = node.inputs[0], node.inputs[1]
    if node.attr("transA", 0):
        raise unsupported(node, "transA=1 would transpose the batch dimension")
    if ctx.value(b).batched:
        raise unsupported(node, "B must be a constant (a weight matrix)")
    weight = np.asarray(ctx.const_value(b), np.float32)
    if node.attr("transB", 0):
        weight = weight.T
    weight = (np.float32(node.attr("alpha", 1.0)) * weight).astype(np.float32)
    n = weight.shape[1]
    bias = None
    if len(node.inputs) > 2 and node.inputs[2]:
        if ctx.value(node.inputs[2]).batched:
            raise unsupported(node, "C must be a constant (a bias)")
        c = np.asarray(ctx.const_value(node.inputs[2]), np.float32)
        if c.ndim == 2 and c.shape[0] != 1:
            raise unsupported(node, f"C of shape {c.shape} varies over the batch")
        bias = (np.float32(node.attr("beta", 1.0)) * np.broadcast_to(c.reshape(-1) if c.ndim == 2 else c, (n,))).astype(np.float32)
    return _dense(ctx, node, a, node.outputs[0], weight, bias, rows=1)


@emits("MatMul")
def emit_matmul(node, ctx) -> str:  # noqa: ANN001
    a, b = node.inputs
    if ctx.value(b).batched:
        raise unsupported(node, "the right operand must be a constant matrix (activation x activation is not supported)")
    weight = np.asarray(ctx.const_value(b), np.float32)
    if weight.ndim != 2:
        raise unsupported(node, f"the constant operand must be 2-D; got shape {weight.shape}")
    shape = ctx.value(a).shape
    if not shape:
        raise unsupported(node, "the left operand needs a feature axis")
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    return _dense(ctx, node, a, node.outputs[0], weight, None, rows=rows)
