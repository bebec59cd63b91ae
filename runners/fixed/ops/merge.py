"""Two-input layers as hls4ml's nnet_merge.h: element-wise Add/Subtract/Multiply/Average/Maximum/
Minimum (the exact result, one cast to the result type; a smaller input repeats, `ii % n`), and
Concatenate along any axis (each value cast to the result type)."""

from __future__ import annotations

import numpy as np

from yukti.runners.fixed.ops._common import stored
from yukti.runners.fixed.plan import Emitted, LayerPlan
from yukti.runners.fixed.types import storage


def _kernel(layer: LayerPlan, body: str) -> Emitted:
    a, b, y = layer.inputs[0], layer.inputs[1], layer.output
    decl = (f"template <bool COUNT> static inline void {layer.fn}(const {storage(a.type)} *__restrict x1, "
            f"const {storage(b.type)} *__restrict x2, {storage(y.type)} *__restrict y, uint64_t *ovf) {{\n{body}}}\n")
    return Emitted(decl, f"{layer.fn}<COUNT>({a.cname}, {b.cname}, {y.cname}, ovf + OVF_{layer.fn});\n")


def emit_merge(layer: LayerPlan) -> Emitted:
    if len(layer.inputs) != 2:
        raise layer.refuse(f"{len(layer.inputs)} inputs; hls4ml merges two")
    op = str(layer.attrs.get("op", "")).lower()
    a, b, y = layer.inputs[0], layer.inputs[1], layer.output
    fa, fb = a.type.fractional, b.type.fractional
    fm = max(fa, fb)
    x1, x2 = f"(int64_t)x1[k % {a.size}]", f"(int64_t)x2[k % {b.size}]"
    al1, al2 = f"{x1} * (1LL << {fm - fa})", f"{x2} * (1LL << {fm - fb})"
    if max(a.type.width + fm - fa, b.type.width + fm - fb) + 2 > 63 or a.type.width + b.type.width > 63:
        raise layer.refuse(f"{a.type} and {b.type} need more than 63 bits exactly")
    if op == "add":
        value, f_in = f"{al1} + {al2}", fm
    elif op == "subtract":
        value, f_in = f"{al1} - {al2}", fm
    elif op == "multiply":
        value, f_in = f"{x1} * {x2}", fa + fb
    elif op == "average":  # (a + b) * ap_ufixed<1,0>(0.5): the same raw sum, one more fractional bit
        value, f_in = f"{al1} + {al2}", fm + 1
    elif op in ("maximum", "minimum"):
        if a.type != b.type:
            raise layer.refuse(f"{op} of two different types ({a.type}, {b.type}): hls4ml's ternary converts to a "
                               "common type the fixed backend does not model")
        compare = ">" if op == "maximum" else "<"
        value, f_in = f"({x1} {compare} {x2} ? {x1} : {x2})", fa
    else:
        raise layer.refuse(f"merge op {op!r}; emulated: add, subtract, multiply, average, maximum, minimum, concatenate")
    body = f"    for (int k = 0; k < {y.size}; k++) y[k] = {stored(value, f_in, y.type)};\n"
    return _kernel(layer, body)


def emit_concatenate(layer: LayerPlan) -> Emitted:
    a, b, y = layer.inputs[0], layer.inputs[1], layer.output
    axis = int(layer.attrs.get("axis", -1))
    axis = axis - 1 if axis > 0 else axis  # hls4ml's axis counts the batch dimension when positive
    try:
        source = np.concatenate([np.arange(a.size).reshape(a.shape), a.size + np.arange(b.size).reshape(b.shape)],
                                axis=axis).reshape(-1)
    except (ValueError, np.exceptions.AxisError) as exc:
        raise layer.refuse(f"concatenating {a.shape} and {b.shape} on axis {axis}: {exc}") from None
    if source.size != y.size:
        raise layer.refuse(f"concatenation gives {source.size} values, the layer holds {y.size}")
    rows = ",\n    ".join(", ".join(str(int(v)) for v in source[i:i + 16]) for i in range(0, source.size, 16))
    body = (f"    for (int k = 0; k < {y.size}; k++) {{\n"
            f"        const int s = {layer.fn}_from[k];\n"
            f"        y[k] = s < {a.size} ? {stored('(int64_t)x1[s]', a.type.fractional, y.type)} : "
            f"{stored(f'(int64_t)x2[s - {a.size}]', b.type.fractional, y.type)};\n"
            "    }\n")
    emitted = _kernel(layer, body)
    emitted.decls = f"static const int {layer.fn}_from[{y.size}] = {{\n    {rows}}};\n" + emitted.decls
    return emitted


EMITTERS = {"Merge": emit_merge, "Concatenate": emit_concatenate}
