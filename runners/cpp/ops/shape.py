"""Identity (a copy) and the shape-only operators. Reshape/Flatten/Squeeze/Unsqueeze are aliases
(handled by the code generator) unless they produce a graph output, when they copy like Identity;
here we only check that they leave the batch dimension alone."""

from __future__ import annotations

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported


@emits("Identity")
def emit_identity(node: ir.Node, ctx: EmitContext) -> str:
    x, y = node.inputs[0], node.outputs[0]
    return f"std::memcpy({ctx.ptr(y)}, {ctx.ptr(x)}, sizeof(float) * nb * {ctx.value(y).size});"


def check_alias(node: ir.Node, ctx: EmitContext) -> None:
    """Shape-only ops are valid as aliases when per-sample sizes agree (the IR already checked the
    batch stays leading)."""
    x, y = ctx.value(node.inputs[0]), ctx.value(node.outputs[0])
    if not x.batched:
        raise unsupported(node, "reshaping a constant should have been folded")
    if x.size != y.size:
        raise unsupported(node, f"per-sample size changes from {x.size} to {y.size}")
