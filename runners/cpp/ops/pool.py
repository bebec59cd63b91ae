"""MaxPool, AveragePool (1-D/2-D: pads, auto_pad, strides, dilations, ceil_mode, count_include_pad),
GlobalAveragePool and GlobalMaxPool.

Windows follow onnxruntime: output o of an axis starts at o*stride - pad_begin; taps outside the
input are skipped (MaxPool, and AveragePool's sum); AveragePool with count_include_pad divides by
the taps inside the padded extent [-pad_begin, size + pad_end), otherwise by the taps inside the
input (divisors worked out here, one per output position).

Each plane is copied into a small stack buffer whose border holds the reduction's identity (-inf
or 0) and whose columns are split by phase (column mod stride); every tap then reads a unit-stride
run and a whole window is one fused statement per output, vectorized over the output columns.
Planes too large for the buffer (or windows wider than MAX_TERMS taps) use per-tap valid ranges
worked out at generation time instead; neither has a bounds check in its inner loop.

The global pools reduce each plane with 8 interleaved partial results (one vector, combined
pairwise at the end): an explicit, fixed order, so it vectorizes without -ffast-math.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import c_float, emits, unsupported
from yukti.runners.cpp.ops.conv import check_output_shape, spatial_attrs, window_geometry

Pair = tuple[int, int]  # (rows, columns)


def _taps(out: int, size: int, stride: int, dilation: int, pad: int, kernel: int) -> list[tuple[int, int]]:
    """Per output index: the taps [lo, hi) that read inside the input."""
    ranges = []
    for o in range(out):
        start = o * stride - pad
        valid = [t for t in range(kernel) if 0 <= start + t * dilation < size]
        ranges.append((valid[0], valid[-1] + 1) if valid else (0, 0))
    return ranges


def _columns(out: int, size: int, stride: int, dilation: int, pad: int, kernel: int) -> list[tuple[int, int]]:
    """Per tap: the outputs [lo, hi) for which it reads inside the input."""
    ranges = []
    for t in range(kernel):
        valid = [o for o in range(out) if 0 <= o * stride - pad + t * dilation < size]
        ranges.append((valid[0], valid[-1] + 1) if valid else (0, 0))
    return ranges


def _counts(out: int, size: int, stride: int, dilation: int, begin: int, end: int, kernel: int, include_pad: bool) -> list[int]:
    counts = []
    for o in range(out):
        positions = [o * stride - begin + t * dilation for t in range(kernel)]
        counts.append(sum(1 for p in positions if (p < size + end if include_pad else 0 <= p < size)))
    return counts


def _window_pool(node: ir.Node, ctx: EmitContext, kind: str) -> str:  # noqa: C901
    x, y = node.inputs[0], node.outputs[0]
    if kind == "max" and len(node.outputs) > 1 and node.outputs[1]:
        indices = node.outputs[1]
        used = indices in ctx.graph.outputs or any(indices in n.inputs for n in ctx.graph.nodes)
        if used:
            raise unsupported(node, "the Indices output (argmax positions) is not supported; only Y")
    xv = ctx.value(x)
    if not xv.batched:
        raise unsupported(node, "the input X must be an activation (batched) tensor")
    rank = len(xv.shape) - 1
    if rank not in (1, 2):
        raise unsupported(node, f"only 1-D and 2-D pooling is supported; input shape {xv.full_shape} is {rank}-D")
    kernel = list(node.attr("kernel_shape", []))
    if len(kernel) != rank:
        raise unsupported(node, f"kernel_shape {kernel} does not match {rank} spatial axes")
    strides, dilations = spatial_attrs(node, rank, kernel)
    ceil_mode = bool(node.attr("ceil_mode", 0))
    begin, end, outs = window_geometry(node, list(xv.shape[1:]), kernel, strides, dilations, ceil_mode=ceil_mode)
    channels = xv.shape[0]
    check_output_shape(node, ctx, y, channels, outs)
    if rank == 1:
        h, w, kh, kw = 1, xv.shape[1], 1, kernel[0]
        sh, sw, dh, dw = 1, strides[0], 1, dilations[0]
        pt, pl, pb, pr, oh, ow = 0, begin[0], 0, end[0], 1, outs[0]
    else:
        (h, w), (kh, kw), (sh, sw), (dh, dw) = xv.shape[1:], kernel, strides, dilations
        (pt, pl), (pb, pr), (oh, ow) = begin, end, outs
    rows = _taps(oh, h, sh, dh, pt, kh)
    cols = _columns(ow, w, sw, dw, pl, kw)
    table = lambda values: ", ".join(str(v) for v in values)  # noqa: E731

    if kind == "max":
        init, update = "-__builtin_huge_valf()", "yr[q] = v > yr[q] ? v : yr[q];"
    else:
        init, update = "0.0f", "yr[q] += v;"
    taps = []
    for s, (lo, hi) in enumerate(cols):
        if lo < hi:
            taps.append(f"for (int64_t q = {lo}; q < {hi}; ++q) {{ const float v = xr[q * {sw} + {s * dw - pl}]; {update} }}")
    finish, div = "", None
    if kind == "avg":
        include = bool(node.attr("count_include_pad", 0))
        count_h = _counts(oh, h, sh, dh, pt, pb, kh, include)
        count_w = _counts(ow, w, sw, dw, pl, pr, kw, include)
        divisor = np.outer(count_h, count_w).astype(np.float32)
        divisor[divisor == 0] = 1.0  # an empty window (only padding) gives 0
        div = ctx.const_array(divisor, f"{node.name}_count")
        finish = f"for (int64_t q = 0; q < {ow}; ++q) yr[q] = yr[q] / {div}[i * {ow} + q];"
    padded = _padded_pool(ctx, x, y, kind, channels, (h, w), (kh, kw), (sh, sw), (dh, dw), (pt, pl), (oh, ow),
                          div)
    if padded is not None:
        return padded
    body = "\n        ".join(taps)
    return f"""
// strategy: per-tap ranges (plane too large for a padded copy on the stack)
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
static const int32_t row_lo[{oh}] = {{{table(r[0] for r in rows)}}}, row_hi[{oh}] = {{{table(r[1] for r in rows)}}};
for (int64_t p = 0; p < nb * {channels}; ++p) {{
  const float* xc = x + p * {h * w};
  float* yc = y + p * {oh * ow};
  for (int64_t i = 0; i < {oh}; ++i) {{
    float* __restrict yr = yc + i * {ow};
    for (int64_t q = 0; q < {ow}; ++q) yr[q] = {init};
    for (int64_t r = row_lo[i]; r < row_hi[i]; ++r) {{
      const float* __restrict xr = xc + (i * {sh} - {pt} + r * {dh}) * {w};
      {body}
    }}
    {finish}
  }}
}}"""


PADDED_LIMIT_FLOATS = 16 * 1024  # stack buffer for one padded plane
MAX_TERMS = 64  # taps per fused statement; wider windows fall back to per-tap ranges


def _padded_pool(ctx: EmitContext, x: str, y: str, kind: str, channels: int, size: Pair, kernel: Pair, stride: Pair,
                 dilation: Pair, pad: Pair, out: Pair, div: str | None) -> str | None:
    """Each plane is copied into a buffer filled with the identity of the reduction (-inf or 0) and
    split by column phase (column mod stride), so every window tap reads a unit-stride run with no
    bounds: one fused statement per output row, vectorized over the output columns. None when the
    plane is too large or the window too wide."""
    (h, w), (kh, kw), (sh, sw), (dh, dw), (pt, pl), (oh, ow) = size, kernel, stride, dilation, pad, out
    rows = max(h + pt, (oh - 1) * sh + (kh - 1) * dh + 1)  # padded extent actually read (ceil_mode reads past pads)
    cols = max(w + pl, (ow - 1) * sw + (kw - 1) * dw + 1)
    wq = -(-cols // sw)
    plane = sw * rows * wq
    if plane > PADDED_LIMIT_FLOATS or kh * kw > MAX_TERMS:
        return None
    offsets = [r * dh * wq + ((s * dw) % sw) * rows * wq + (s * dw) // sw for r in range(kh) for s in range(kw)]
    if kind == "max":
        fill = "-__builtin_huge_valf()"
        reduce = [f"float v = xr[q + {offsets[0]}];"]
        reduce += [f"{{ const float t = xr[q + {o}]; v = t > v ? t : v; }}" for o in offsets[1:]]
        store = "yr[q] = v;"
    else:
        fill = "0.0f"
        reduce = ["float v = " + " + ".join(f"xr[q + {o}]" for o in offsets) + ";"]
        store = f"yr[q] = v / {div}[i * {ow} + q];"
    copy = []
    for phase in range(sw):
        first = (phase - pl) % sw
        count = len(range(first, w, sw))
        if count:
            q0 = (first + pl) // sw
            copy.append(f"for (int64_t k = 0; k < {count}; ++k) dst[{phase * rows * wq + q0} + k] = src[{first} + k * {sw}];")
    copy_text = "\n    ".join(copy)
    reduce_text = "\n      ".join(reduce)
    return f"""
// strategy: padded plane ({fill} borders), {kh * kw} taps per fused statement
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
alignas(64) float xp[{plane}];
for (int64_t k = 0; k < {plane}; ++k) xp[k] = {fill};  // borders keep the fill; input positions are rewritten per plane
for (int64_t p = 0; p < nb * {channels}; ++p) {{
  const float* xc = x + p * {h * w};
  for (int64_t i = 0; i < {h}; ++i) {{
    const float* src = xc + i * {w};
    float* dst = xp + (i + {pt}) * {wq};
    {copy_text}
  }}
  float* yc = y + p * {oh * ow};
  for (int64_t i = 0; i < {oh}; ++i) {{
    const float* xr = xp + i * {sh * wq};
    float* __restrict yr = yc + i * {ow};
    for (int64_t q = 0; q < {ow}; ++q) {{
      {reduce_text}
      {store}
    }}
  }}
}}"""


@emits("MaxPool")
def emit_max_pool(node: ir.Node, ctx: EmitContext) -> str:
    return _window_pool(node, ctx, "max")


@emits("AveragePool")
def emit_average_pool(node: ir.Node, ctx: EmitContext) -> str:
    return _window_pool(node, ctx, "avg")


def _global_pool(node: ir.Node, ctx: EmitContext, kind: str) -> str:
    x, y = node.inputs[0], node.outputs[0]
    xv = ctx.value(x)
    if not xv.batched:
        raise unsupported(node, "the input X must be an activation (batched) tensor")
    if len(xv.shape) < 2:
        raise unsupported(node, f"input shape {xv.full_shape} has no spatial axis")
    channels = xv.shape[0]
    plane = int(np.prod(xv.shape[1:], dtype=np.int64))
    if ctx.value(y).size != channels:
        raise unsupported(node, f"output shape {ctx.value(y).full_shape} is not one value per channel")
    if kind == "max":
        init, combine = "-__builtin_huge_valf()", lambda a, b: f"({b} > {a} ? {b} : {a})"
        update = "acc = v > acc ? v : acc;"
        finish = "acc"
    else:
        init, combine = "0.0f", lambda a, b: f"({a} + {b})"
        update = "acc += v;"
        finish = f"acc / {c_float(plane)}"
    lanes = 8
    if plane < 4 * lanes:  # short planes: one sequential pass
        reduce = f"""float acc = {init};
  for (int64_t i = 0; i < {plane}; ++i) {{ const float v = xc[i]; {update} }}"""
    else:  # `lanes` interleaved partial results (a vector), combined pairwise, then the tail
        parts = [f"part[{k}]" for k in range(lanes)]
        while len(parts) > 1:
            parts = [combine(parts[k], parts[k + 1]) for k in range(0, len(parts), 2)]
        whole = plane // lanes * lanes
        reduce = f"""float part[{lanes}];
  for (int64_t l = 0; l < {lanes}; ++l) part[l] = {init};
  for (int64_t i = 0; i < {whole}; i += {lanes})
    for (int64_t l = 0; l < {lanes}; ++l) {{ const float v = xc[i + l]; float& acc = part[l]; {update} }}
  float acc = {parts[0]};
  for (int64_t i = {whole}; i < {plane}; ++i) {{ const float v = xc[i]; {update} }}"""
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t p = 0; p < nb * {channels}; ++p) {{
  const float* xc = x + p * {plane};
  {reduce}
  y[p] = {finish};
}}"""


@emits("GlobalAveragePool")
def emit_global_average_pool(node: ir.Node, ctx: EmitContext) -> str:
    return _global_pool(node, ctx, "avg")


@emits("GlobalMaxPool")
def emit_global_max_pool(node: ir.Node, ctx: EmitContext) -> str:
    return _global_pool(node, ctx, "max")
