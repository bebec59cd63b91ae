"""Layers that move values: the input conversion (float -> input type, as hls4ml's bridge does),
Transpose (a permutation, cast to the result type) and Reshape/Flatten (the same values: hls4ml
writes them as aliases of their input)."""

from __future__ import annotations

import numpy as np

from yukti.runners.fixed.ops._common import stored, unary_call, unary_kernel
from yukti.runners.fixed.plan import Emitted, LayerPlan
from yukti.runners.fixed.types import storage


def emit_input(layer: LayerPlan) -> Emitted:
    # the per-sample function converts model inputs itself (codegen.py); nothing to run here
    return Emitted("", "", counters=("result",))


def emit_transpose(layer: LayerPlan) -> Emitted:
    x, y = layer.inputs[0], layer.output
    perm = layer.attr("perm")
    in_shape = tuple(int(d) for d in x.shape)
    if sorted(perm) != list(range(len(in_shape))):
        raise layer.refuse(f"perm {perm} is not a permutation of the input's {len(in_shape)} axes {in_shape}")
    source = np.transpose(np.arange(x.size).reshape(in_shape), perm).reshape(-1)
    rows = ",\n    ".join(", ".join(str(int(v)) for v in source[i:i + 16]) for i in range(0, x.size, 16))
    value = stored(f"(int64_t)x[{layer.fn}_from[k]]", x.type.fractional, y.type)
    decls = (f"static const int {layer.fn}_from[{x.size}] = {{\n    {rows}}};\n"
             + unary_kernel(layer, f"    for (int k = 0; k < {x.size}; k++) y[k] = {value};\n"))
    return Emitted(decls, unary_call(layer))


def emit_reshape(layer: LayerPlan) -> Emitted:
    x, y = layer.inputs[0], layer.output
    if x.size != y.size:
        raise layer.refuse(f"reshape of {x.size} values into {y.size}")
    # an alias in hls4ml's io_parallel code: the raw values stay as they are, whatever result_t says
    return Emitted("", f"for (int k = 0; k < {x.size}; k++) {y.cname}[k] = ({storage(y.type)}){x.cname}[k];\n",
                   counters=())


EMITTERS = {"Input": emit_input, "Transpose": emit_transpose, "Reshape": emit_reshape}
