"""BatchNormalization in inference mode, folded per channel at generation time:
y = x * scale + shift with scale = gamma / sqrt(var + eps) and shift = beta - mean * scale."""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported


@emits("BatchNormalization")
def emit_batch_normalization(node: ir.Node, ctx: EmitContext) -> str:
    if node.attr("training_mode", 0):
        raise unsupported(node, "training_mode=1 (batch statistics, running-mean updates) is not supported; "
                                "only inference with the stored mean and variance")
    if not node.attr("spatial", 1):
        raise unsupported(node, "spatial=0 (per-element statistics, opset < 9) is not supported")
    for extra in node.outputs[1:]:
        if extra and (extra in ctx.graph.outputs or any(extra in n.inputs for n in ctx.graph.nodes)):
            raise unsupported(node, f"the training output {extra!r} (running or saved statistics) is not supported")
    if len(node.inputs) < 5 or not all(node.inputs[:5]):
        raise unsupported(node, "needs X, scale, B, mean and var")
    x, y = node.inputs[0], node.outputs[0]
    xv = ctx.value(x)
    if not xv.batched:
        raise unsupported(node, "the input X must be an activation (batched) tensor")
    if not xv.shape:
        raise unsupported(node, f"input shape {xv.full_shape} has no channel axis")
    channels = xv.shape[0]
    params = []
    for role, name in zip(("scale", "B", "mean", "var"), node.inputs[1:5]):
        if ctx.value(name).batched:
            raise unsupported(node, f"{role} must be a constant (initializer), not a computed tensor")
        array = np.asarray(ctx.const_value(name), np.float64).reshape(-1)
        if array.shape != (channels,):
            raise unsupported(node, f"{role} has {array.size} values for {channels} channels")
        params.append(array)
    gamma, beta, mean, var = params
    eps = float(np.float32(node.attr("epsilon", 1e-5)))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    sc = ctx.const_array(scale.astype(np.float32), f"{node.name}_scale")
    sh = ctx.const_array(shift.astype(np.float32), f"{node.name}_shift")
    inner = int(np.prod(xv.shape[1:], dtype=np.int64)) if len(xv.shape) > 1 else 1
    if inner == 1:  # (N, C): vectorize over the channels
        return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* __restrict xn = x + n * {channels};
  float* __restrict yn = y + n * {channels};
  for (int64_t c = 0; c < {channels}; ++c) yn[c] = xn[c] * {sc}[c] + {sh}[c];
}}"""
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t p = 0; p < nb * {channels}; ++p) {{
  const int64_t c = p % {channels};
  const float s = {sc}[c], b = {sh}[c];
  const float* xc = x + p * {inner};
  float* yc = y + p * {inner};
  for (int64_t i = 0; i < {inner}; ++i) yc[i] = xc[i] * s + b;
}}"""
