"""Template for a new operator emitter: copy this file, rename, and import it in __init__.py.

Three steps, as in onnx2c's operator files:
1. read and check the attributes (refuse what is not supported with `unsupported`),
2. resolve the shapes (ctx.value(name).shape is the per-sample shape of a batched tensor;
   constants are in ctx.const_value(name), full shape),
3. emit the body: C++ statements over the `nb` samples of the tile.
"""

from __future__ import annotations

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported  # noqa: F401


# @emits("MyOp")
def emit_my_op(node: ir.Node, ctx: EmitContext) -> str:
    x, y = node.inputs[0], node.outputs[0]
    size = ctx.value(y).size
    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
for (int64_t i = 0; i < nb * {size}; ++i) y[i] = x[i];
"""
