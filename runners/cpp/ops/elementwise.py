"""Elementwise operators: activations (Relu, LeakyRelu, Elu, Sigmoid, Tanh, Clip, Erf, Gelu, ...) and
binary arithmetic with ONNX (numpy) broadcasting (Add, Sub, Mul, Div)."""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import c_float, emits, unsupported


def _unary(node: ir.Node, ctx: EmitContext, expression: str) -> str:
    """`expression` computes from `v` (a float); applied to every element of the tile."""
    x, y = node.inputs[0], node.outputs[0]
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t i = 0; i < nb * {ctx.value(y).size}; ++i) {{
  const float v = x[i];
  y[i] = {expression};
}}"""


@emits("Relu")
def emit_relu(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "v < 0.0f ? 0.0f : v")  # NaN stays NaN, as in ONNX


@emits("LeakyRelu")
def emit_leaky_relu(node: ir.Node, ctx: EmitContext) -> str:
    alpha = c_float(node.attr("alpha", 0.01))
    return _unary(node, ctx, f"v >= 0.0f ? v : {alpha} * v")


@emits("Elu")
def emit_elu(node: ir.Node, ctx: EmitContext) -> str:
    alpha = c_float(node.attr("alpha", 1.0))
    return _unary(node, ctx, f"v >= 0.0f ? v : {alpha} * (std::exp(v) - 1.0f)")


@emits("Sigmoid")
def emit_sigmoid(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "1.0f / (1.0f + fast_exp(-v))")


@emits("Tanh")
def emit_tanh(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "std::tanh(v)")


@emits("Exp")
def emit_exp(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "std::exp(v)")


@emits("Abs")
def emit_abs(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "std::fabs(v)")


@emits("Neg")
def emit_neg(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "-v")


@emits("Sqrt")
def emit_sqrt(node: ir.Node, ctx: EmitContext) -> str:
    return _unary(node, ctx, "std::sqrt(v)")


@emits("Erf")
def emit_erf(node: ir.Node, ctx: EmitContext) -> str:
    # std::erf (the C library's, correctly rounded to about 1 ulp): no approximation of ours whose
    # accuracy or evaluation order -ffast-math could change.
    return _unary(node, ctx, "std::erf(v)")


@emits("Gelu")
def emit_gelu(node: ir.Node, ctx: EmitContext) -> str:
    approximate = node.attr("approximate", "none")
    if approximate == "none":  # 0.5 x (1 + erf(x / sqrt 2))
        return _unary(node, ctx, f"0.5f * v * (1.0f + std::erf(v * {c_float(1 / np.sqrt(2))}))")
    if approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
        return _unary(node, ctx, f"0.5f * v * (1.0f + std::tanh({c_float(np.sqrt(2 / np.pi))} * (v + {c_float(0.044715)} * v * v * v)))")
    raise unsupported(node, f"approximate={approximate!r} (ONNX knows 'none' and 'tanh')")


@emits("Clip")
def emit_clip(node: ir.Node, ctx: EmitContext) -> str:
    low, high = node.attr("min"), node.attr("max")  # opset < 11 attributes
    for position, name in ((1, "min"), (2, "max")):
        if len(node.inputs) > position and node.inputs[position]:
            try:
                bound = float(np.asarray(ctx.const_value(node.inputs[position])).reshape(-1)[0])
            except KeyError:
                raise unsupported(node, f"the {name} bound must be a constant") from None
            low, high = (bound, high) if name == "min" else (low, bound)
    expression = "v"
    if low is not None:
        expression = f"std::max({expression}, {c_float(low)})"
    if high is not None:
        expression = f"std::min({expression}, {c_float(high)})"
    if low is not None and high is not None:  # NaN passes through, as in ONNX
        expression = f"(v != v) ? v : {expression}"
    return _unary(node, ctx, expression)


_BINARY = {"Add": "+", "Sub": "-", "Mul": "*", "Div": "/"}


def _strides(shape: tuple[int, ...], out: tuple[int, ...]) -> list[int]:
    """Element strides of `shape` broadcast to `out` (0 where broadcast)."""
    padded = (1,) * (len(out) - len(shape)) + tuple(shape)
    strides, step = [], 1
    for dim, target in zip(reversed(padded), reversed(out)):
        strides.append(step if dim == target else 0)
        if dim not in (1, target):
            raise ValueError(f"cannot broadcast {shape} to {out}")
        step *= dim
    return list(reversed(strides))


@emits("Add", "Sub", "Mul", "Div")
def emit_binary(node: ir.Node, ctx: EmitContext) -> str:
    operator = _BINARY[node.op]
    y = node.outputs[0]
    out_shape = ctx.value(y).shape
    out_size = ctx.value(y).size
    operands = []  # (C pointer expression, per-sample stride or 0 for constants, element strides)
    for position, name in enumerate(node.inputs[:2]):
        value = ctx.value(name)
        if value.batched:
            shape = value.shape
            if len(shape) != len(out_shape):
                # numpy aligns dims from the right: this input's batch axis would meet another axis
                raise unsupported(node, f"input {name} {value.full_shape} and the output {ctx.value(y).full_shape} differ in rank; "
                                        "their batch axes would not line up")
            operands.append((ctx.ptr(name), value.size, _strides(shape, out_shape)))
        else:
            array = np.asarray(value.const, dtype=np.float32)
            full = array.shape
            if len(full) == len(out_shape) + 1:
                if full[0] != 1:
                    raise unsupported(node, f"constant {name} of shape {full} would broadcast over the batch")
                array = array.reshape(full[1:])
            try:
                expanded = np.broadcast_to(array, out_shape)
            except ValueError:
                raise unsupported(node, f"constant {name} of shape {full} does not broadcast to {('N', *out_shape)}") from None
            ident = ctx.const_array(np.ascontiguousarray(expanded), f"{node.name}_{position}")
            operands.append((ident, 0, _strides(out_shape, out_shape)))
    contiguous = _strides(out_shape, out_shape)
    if all(strides == contiguous for _, _, strides in operands):
        (a, a_step, _), (b, b_step, _) = operands
        if a_step and b_step:  # same shape, both batched: one flat loop over the tile
            return f"""
const float* a = {a};
const float* b = {b};
float* y = {ctx.ptr(y)};
for (int64_t i = 0; i < nb * {out_size}; ++i) y[i] = a[i] {operator} b[i];"""
        return f"""
float* y = {ctx.ptr(y)};
for (int64_t n = 0; n < nb; ++n) {{
  const float* an = {a} + n * {a_step};
  const float* bn = {b} + n * {b_step};
  float* yn = y + n * {out_size};
  for (int64_t i = 0; i < {out_size}; ++i) yn[i] = an[i] {operator} bn[i];
}}"""
    # General case: nested loops over the per-sample output dims with broadcast strides.
    loops, index_a, index_b = [], [], []
    for axis, dim in enumerate(out_shape):
        loops.append(f"for (int64_t i{axis} = 0; i{axis} < {dim}; ++i{axis})")
        if operands[0][2][axis]:
            index_a.append(f"i{axis} * {operands[0][2][axis]}")
        if operands[1][2][axis]:
            index_b.append(f"i{axis} * {operands[1][2][axis]}")
    out_index = " + ".join(f"i{axis} * {stride}" for axis, stride in enumerate(contiguous)) or "0"
    return f"""
for (int64_t n = 0; n < nb; ++n) {{
  const float* an = {operands[0][0]} + n * {operands[0][1]};
  const float* bn = {operands[1][0]} + n * {operands[1][1]};
  float* yn = {ctx.ptr(y)} + n * {out_size};
  {' '.join(loops)}
    yn[{out_index}] = an[{' + '.join(index_a) or '0'}] {operator} bn[{' + '.join(index_b) or '0'}];
}}"""
