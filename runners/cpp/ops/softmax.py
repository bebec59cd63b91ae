"""Softmax (opset >= 13: along one axis; before 13: over the flattened trailing axes)."""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported


@emits("Softmax")
def emit_softmax(node: ir.Node, ctx: EmitContext) -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.value(x).shape  # per sample
    rank = len(shape) + 1
    axis = node.attr("axis", -1 if ctx.graph.opset >= 13 else 1)
    axis = axis + rank if axis < 0 else axis
    if axis == 0:
        raise unsupported(node, "softmax over the batch axis")
    per_sample_axis = axis - 1
    if ctx.graph.opset >= 13:
        outer = int(np.prod(shape[:per_sample_axis], dtype=np.int64))
        length = shape[per_sample_axis]
        inner = int(np.prod(shape[per_sample_axis + 1:], dtype=np.int64))
    else:  # coerced to 2-D at `axis`
        outer, length, inner = int(np.prod(shape[:per_sample_axis], dtype=np.int64)), int(np.prod(shape[per_sample_axis:], dtype=np.int64)), 1
    if inner == 1:
        return _softmax_rows(ctx.ptr(x), ctx.ptr(y), outer, length)
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t o = 0; o < nb * {outer}; ++o) {{
  for (int64_t i = 0; i < {inner}; ++i) {{
    const float* xs = x + o * {length * inner} + i;
    float* ys = y + o * {length * inner} + i;
    float peak = xs[0];
    for (int64_t j = 1; j < {length}; ++j) peak = std::max(peak, xs[j * {inner}]);
    float total = 0.0f;
    for (int64_t j = 0; j < {length}; ++j) {{
      const float e = fast_exp(xs[j * {inner}] - peak);
      ys[j * {inner}] = e;
      total += e;
    }}
    const float scale = 1.0f / total;
    for (int64_t j = 0; j < {length}; ++j) ys[j * {inner}] *= scale;
  }}
}}"""


def _softmax_rows(x: str, y: str, outer: int, length: int) -> str:
    """Softmax over contiguous rows (the last axis): the exps of the whole tile in one vector pass
    (fast_exp_span), between a per-row pass that subtracts the row's peak and one that normalises.
    A row is often shorter than a vector (5 classes): value by value, the exps would dominate the
    network's time at batch 1024."""
    return f"""
const float* x = {x};
float* y = {y};
const int64_t rows = nb * {outer};
for (int64_t o = 0; o < rows; ++o) {{
  const float* xs = x + o * {length};
  float* ys = y + o * {length};
  float peak = xs[0];
  for (int64_t j = 1; j < {length}; ++j) peak = std::max(peak, xs[j]);
  for (int64_t j = 0; j < {length}; ++j) ys[j] = xs[j] - peak;
}}
fast_exp_span(y, rows * {length});
for (int64_t o = 0; o < rows; ++o) {{
  float* ys = y + o * {length};
  float total = 0.0f;
  for (int64_t j = 0; j < {length}; ++j) total += ys[j];
  const float scale = 1.0f / total;
  for (int64_t j = 0; j < {length}; ++j) ys[j] *= scale;
}}"""
