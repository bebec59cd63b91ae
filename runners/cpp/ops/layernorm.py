"""LayerNormalization (opset 17): each row of the trailing axes from `axis` on is normalized,
y = (x - mean) / sqrt(var + epsilon) * scale + bias, with constant scale and optional bias
broadcast to those axes.

Mean and variance accumulate in double, two passes (mean first, then the squared deviations): as
exact as float32 inputs allow, whatever the order -ffast-math picks, and no cancellation of
E[x^2] - E[x]^2 on rows far from zero. The optional outputs Mean and InvStdDev (one value per row,
kept for training) are written when the graph names them, in float32 (stash_type 1, the default);
another stash_type is refused when anything uses them.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import c_float, emits, unsupported, per_sample_shape


def _parameter(node: ir.Node, ctx: EmitContext, name: str, role: str, normalized: tuple[int, ...]) -> np.ndarray:
    """Scale or bias as a flat float32 array over the normalized axes (broadcast as numpy does)."""
    value = ctx.value(name)
    if value.batched:
        raise unsupported(node, f"{role} must be a constant (an initializer), not a computed tensor")
    array = np.asarray(value.const, np.float32)
    while array.ndim > len(normalized) and array.shape[0] == 1:
        array = array.reshape(array.shape[1:])
    try:
        return np.ascontiguousarray(np.broadcast_to(array, normalized)).reshape(-1)
    except ValueError:
        raise unsupported(node, f"{role} of shape {value.const.shape} does not broadcast to the normalized axes {normalized}") from None


@emits("LayerNormalization")
def emit_layer_normalization(node: ir.Node, ctx: EmitContext) -> str:
    stash = (list(node.outputs[1:3]) + ["", ""])[:2]  # Mean, InvStdDev ("" when not asked for)
    for extra in stash:
        used = extra and (extra in ctx.graph.outputs or any(extra in n.inputs for n in ctx.graph.nodes))
        if used and node.attr("stash_type", 1) != 1:
            raise unsupported(node, f"its output {extra!r} (the stashed Mean or InvStdDev) is used with stash_type="
                                    f"{node.attr('stash_type')}; generated C++ computes float32 (stash_type 1) statistics only")
    if len(node.inputs) < 2 or not node.inputs[1]:
        raise unsupported(node, "needs X and Scale")
    x, y = node.inputs[0], node.outputs[0]
    shape = per_sample_shape(node, ctx, "normalizing")
    rank = len(shape) + 1
    axis = int(node.attr("axis", -1))
    if not -rank <= axis < rank:
        raise unsupported(node, f"axis {axis} is out of range for rank {rank}")
    axis %= rank
    if axis == 0:
        raise unsupported(node, "normalizing from the batch axis 0 on; generated C++ keeps samples independent")
    normalized = shape[axis - 1:]
    length = int(np.prod(normalized, dtype=np.int64))
    rows = int(np.prod(shape[:axis - 1], dtype=np.int64))
    scale = ctx.const_array(_parameter(node, ctx, node.inputs[1], "Scale", normalized), f"{node.name}_scale")
    has_bias = len(node.inputs) > 2 and bool(node.inputs[2])
    bias = ctx.const_array(_parameter(node, ctx, node.inputs[2], "B", normalized), f"{node.name}_bias") if has_bias else None
    epsilon = c_float(node.attr("epsilon", 1e-5))
    if length == 0 or rows == 0:
        return "// empty rows: nothing to normalize"
    shift = f" + {bias}[i]" if bias else ""
    stores = "".join(f"\n  {ctx.ptr(out)}[r] = {what};" for out, what in zip(stash, ("m", "inv")) if out and out in ctx.pointers)
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t r = 0; r < nb * {rows}; ++r) {{
  const float* __restrict xr = x + r * {length};
  float* __restrict yr = y + r * {length};
  double sum = 0.0;
  for (int64_t i = 0; i < {length}; ++i) sum += xr[i];
  const double mean = sum / {length};
  double squares = 0.0;
  for (int64_t i = 0; i < {length}; ++i) {{
    const double d = xr[i] - mean;
    squares += d * d;
  }}
  const float m = static_cast<float>(mean);
  const float inv = static_cast<float>(1.0 / std::sqrt(squares / {length} + static_cast<double>({epsilon})));
  for (int64_t i = 0; i < {length}; ++i) yr[i] = (xr[i] - m) * inv * {scale}[i]{shift};{stores}
}}"""
