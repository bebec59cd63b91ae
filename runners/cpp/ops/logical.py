"""Comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual), logic (And, Or, Xor, Not), Where
and Cast, with numpy broadcasting over any number of operands.

Bool tensors are stored as float 0.0f / 1.0f. Every buffer the code generator plans is float (one
arena of floats, `float*` tile pointers, per-sample strides in floats) and the reshaping ops alias
their input's buffer, so a uint8 tensor would need typed buffers and typed aliases throughout
codegen.py for the few masks a network holds; as floats, a mask is 4 bytes an element and no copy
or conversion is needed when it meets float data (Where, a Cast to float). Reading one tests
`!= 0.0f`, so any non-zero float counts as true, as a cast to bool does.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported
from yukti.runners.cpp.ops.elementwise import _strides

# Expressions on the operands v0, v1, v2 (floats); bools come out as 1.0f / 0.0f.
_EXPRESSIONS = {
    "Equal": "v0 == v1 ? 1.0f : 0.0f",
    "Less": "v0 < v1 ? 1.0f : 0.0f",
    "Greater": "v0 > v1 ? 1.0f : 0.0f",
    "LessOrEqual": "v0 <= v1 ? 1.0f : 0.0f",
    "GreaterOrEqual": "v0 >= v1 ? 1.0f : 0.0f",
    "And": "(v0 != 0.0f && v1 != 0.0f) ? 1.0f : 0.0f",
    "Or": "(v0 != 0.0f || v1 != 0.0f) ? 1.0f : 0.0f",
    "Xor": "((v0 != 0.0f) != (v1 != 0.0f)) ? 1.0f : 0.0f",
    "Not": "v0 == 0.0f ? 1.0f : 0.0f",
    "Where": "v0 != 0.0f ? v1 : v2",
}
_FLOATS = (np.float32, np.bool_)  # what activations hold: a double or int constant would make another type


def broadcast(node: ir.Node, ctx: EmitContext, operands: list[str], expression: str) -> str:
    """C++ computing `expression` (of v0, v1, ...: the operands' elements) for every output element,
    the operands broadcast to the output as numpy does. A batched operand must have the output's rank
    (else its batch axis would meet another one); a constant is stored once in its own shape and read
    through zero strides, not expanded."""
    y = node.outputs[0]
    out_shape = tuple(ctx.value(y).shape)
    out_size = ctx.value(y).size
    parts = []  # (C pointer, per-sample stride or 0, element strides over the output)
    for position, name in enumerate(operands):
        value = ctx.value(name)
        if value.batched:
            if len(value.shape) != len(out_shape):
                raise unsupported(node, f"input {name} {value.full_shape} and the output {ctx.value(y).full_shape} differ in rank; "
                                        "their batch axes would not line up")
            strides = _strides(tuple(value.shape), out_shape)
            parts.append((ctx.ptr(name), value.size, strides))
            continue
        array = np.asarray(value.const)
        if array.dtype.type not in _FLOATS:
            raise unsupported(node, f"constant {name} is {array.dtype}; generated C++ computes in float32")
        array = array.astype(np.float32)
        if array.ndim == len(out_shape) + 1:
            if array.shape[0] != 1:
                raise unsupported(node, f"constant {name} of shape {array.shape} would broadcast over the batch")
            array = array.reshape(array.shape[1:])
        if array.ndim > len(out_shape):
            raise unsupported(node, f"constant {name} of shape {value.const.shape} has more dimensions than the output")
        try:
            strides = _strides(array.shape, out_shape)
        except ValueError:
            raise unsupported(node, f"constant {name} of shape {value.const.shape} does not broadcast to "
                                    f"{ctx.value(y).full_shape}") from None
        parts.append((ctx.const_array(np.ascontiguousarray(array), f"{node.name}_{position}"), 0, strides))
    contiguous = _strides(out_shape, out_shape)
    lines = [f"float* y = {ctx.ptr(y)};", "for (int64_t n = 0; n < nb; ++n) {", f"  float* __restrict yn = y + n * {out_size};"]
    for index, (pointer, step, _) in enumerate(parts):
        lines.append(f"  const float* p{index} = {pointer}" + (f" + n * {step};" if step else ";"))
    if all(strides in (contiguous, [0] * len(out_shape)) for _, _, strides in parts):
        # each operand is either the output's shape or one value: a flat loop
        reads = "; ".join(f"const float v{index} = p{index}[{'i' if strides == contiguous and out_shape else '0'}]"
                          for index, (_, _, strides) in enumerate(parts))
        lines.append(f"  for (int64_t i = 0; i < {out_size}; ++i) {{ {reads}; yn[i] = {expression}; }}")
    else:
        loops = " ".join(f"for (int64_t i{axis} = 0; i{axis} < {dim}; ++i{axis})" for axis, dim in enumerate(out_shape))
        reads = []
        for index, (_, _, strides) in enumerate(parts):
            offset = " + ".join(f"i{axis} * {stride}" for axis, stride in enumerate(strides) if stride) or "0"
            reads.append(f"const float v{index} = p{index}[{offset}]")
        target = " + ".join(f"i{axis} * {stride}" for axis, stride in enumerate(contiguous)) or "0"
        lines.append(f"  {loops} {{ {'; '.join(reads)}; yn[{target}] = {expression}; }}")
    lines.append("}")
    return "\n" + "\n".join(lines)


@emits("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor")
def emit_comparison(node: ir.Node, ctx: EmitContext) -> str:
    return broadcast(node, ctx, node.inputs[:2], _EXPRESSIONS[node.op])


@emits("Not")
def emit_not(node: ir.Node, ctx: EmitContext) -> str:
    return broadcast(node, ctx, node.inputs[:1], _EXPRESSIONS["Not"])


@emits("Where")
def emit_where(node: ir.Node, ctx: EmitContext) -> str:
    return broadcast(node, ctx, node.inputs[:3], _EXPRESSIONS["Where"])


# Casts between the two element types activations have here: float32 and bool (0.0f / 1.0f).
_CASTS = {TensorProto.FLOAT: "v0", TensorProto.BOOL: "v0 != 0.0f ? 1.0f : 0.0f"}


@emits("Cast")
def emit_cast(node: ir.Node, ctx: EmitContext) -> str:
    to = node.attr("to")
    if to not in _CASTS:
        name = TensorProto.DataType.Name(to) if to in TensorProto.DataType.values() else str(to)
        raise unsupported(node, f"a cast to {name}; generated C++ holds float32 and bool (as 0/1 floats) activations only")
    if not ctx.value(node.inputs[0]).batched:
        raise unsupported(node, "casting a constant should have been folded")
    # from float or bool to float, the stored value is already the result: a copy (v0)
    return broadcast(node, ctx, node.inputs[:1], _CASTS[to])
