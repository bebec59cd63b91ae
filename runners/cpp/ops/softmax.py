"""Softmax (opset >= 13: along one axis; before 13: over the flattened trailing axes)."""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.isa import Isa
from yukti.runners.cpp.ops import emits, pairwise_sum, unsupported


def softmax_axis(node: ir.Node, opset: int, rank: int) -> int:
    """The node's axis in a tensor of `rank` (batch included), made non-negative; before opset 13 the
    softmax runs over the axes from it on."""
    axis = node.attr("axis", -1 if opset >= 13 else 1)
    return axis + rank if axis < 0 else axis


@emits("Softmax")
def emit_softmax(node: ir.Node, ctx: EmitContext) -> str:
    x, y = node.inputs[0], node.outputs[0]
    shape = ctx.value(x).shape  # per sample
    axis = softmax_axis(node, ctx.graph.opset, len(shape) + 1)
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
        return softmax_rows(ctx.ptr(x), ctx.ptr(y), outer, length)
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


def softmax_rows(x: str, y: str, outer: int, length: int) -> str:
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


# A row whose exps sum within these bounds has no exp that saturated at the top (every logit below
# about 69) and one at least near the top of float's range below 1 (the largest logit above about
# -69): the softmax without its peak shift is then the shifted one to float rounding.
SHIFT_FREE_LOW, SHIFT_FREE_HIGH = "1e-30f", "1e30f"


def register_softmax(isa: Isa, logits: list[str], columns: list[int], n: int, row: str) -> list[str]:
    """C++ for the softmax of one row of `n` whose logits are still in registers: the vector
    expressions `logits`, one per output vector (at `columns`, every vector of the row), stored at
    `row`. Fused into the dense layer before it (codegen.fuse_activations), the softmax needs no
    pass over memory and, at batch 1, none of the row's scalar loops: exps without the peak shift
    (no max to wait for), a horizontal sum, one division. A row out of the shift-free range goes
    through softmax_in_place (the prelude)."""
    t, lanes = isa.vector_type, isa.lanes
    lines = [f"const {t} " + ", ".join(f"z{v} = {expr}" for v, expr in enumerate(logits)) + ";"]
    lines.append(f"{t} " + ", ".join(f"e{v} = fast_exp(z{v})" for v in range(len(logits))) + ";")
    last = len(logits) - 1
    valid = n - columns[last]
    if valid < lanes:  # the padding lanes of a partial last vector hold exp(0)
        lines.append(f"e{last} = kLaneIndex < {valid} ? e{last} : {t}{{}};")
    lines.append(f"const {t} sum = {pairwise_sum([f'e{v}' for v in range(len(logits))])};")
    width = lanes if len(logits) > 1 else 1 << (valid - 1).bit_length()  # lanes that can be nonzero
    lines += _horizontal_sum("sum", width, "total")
    lines.append(f"if (__builtin_expect(total > {SHIFT_FREE_LOW} && total < {SHIFT_FREE_HIGH}, 1)) {{")
    lines.append("  const float scale = 1.0f / total;")
    for v, column in enumerate(columns):
        lines.append(f"  {{ const {t} out = e{v} * scale; std::memcpy({row} + {column}, &out, {_bytes(n - column, lanes)}); }}")
    lines.append("} else {")
    for v, column in enumerate(columns):
        lines.append(f"  std::memcpy({row} + {column}, &z{v}, {_bytes(n - column, lanes)});")
    lines.append(f"  softmax_in_place({row}, {n});")
    lines.append("}")
    return lines


def _bytes(remaining: int, lanes: int) -> str:
    return "sizeof(float) * " + str(min(remaining, lanes))


def _horizontal_sum(vector: str, width: int, into: str) -> list[str]:
    """`into` = the sum of the first `width` lanes (a power of two) of `vector`, halving: log2(width)
    additions deep; the lanes past `width` are not read. Halves by memcpy into narrower vector types,
    which compilers turn into register extracts: __builtin_shufflevector would need GCC 12."""
    lines, current = [], vector
    while width > 1:
        half = width // 2
        lines += [f"typedef float vsum{half} __attribute__((vector_size({4 * half})));",
                  f"vsum{half} low{half}, high{half};",
                  f"std::memcpy(&low{half}, &{current}, sizeof low{half});",
                  f"std::memcpy(&high{half}, reinterpret_cast<const char*>(&{current}) + sizeof low{half}, sizeof high{half});",
                  f"const vsum{half} h{half} = low{half} + high{half};"]
        current, width = f"h{half}", half
    lines.append(f"const float {into} = {current}[0];")
    return lines
