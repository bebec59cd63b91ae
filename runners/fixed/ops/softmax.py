"""Softmax as hls4ml's nnet_activation.h: the `stable` (x_max - x in inp_norm_t) and `latency` (x
itself) implementations address an exp table by the top bits of the raw pattern, sum in accum_t
with hls4ml's balanced tree, and multiply by 1/sum from a second table addressed the same way;
`argmax` is one-hot. Tables are filled with the same single-precision expressions."""

from __future__ import annotations

import math

from yukti.fixed_point import FixedType
from yukti.runners.fixed.ops._common import cast, unary_call, unary_kernel
from yukti.runners.fixed.plan import Emitted, LayerPlan
from yukti.runners.fixed.types import args, storage


def _tree(values: list[str], accum: FixedType) -> str:
    """hls4ml's `reduce`: op(reduce(left part of the largest power of two below n), reduce(rest))."""
    n = len(values)
    if n == 1:
        return values[0]
    left = 1 << math.floor(math.log2(n - 1)) if n > 2 else 1
    a, b = _tree(values[:left], accum), _tree(values[left:], accum)
    return f"add({a}, {b})"


def _address_bits(size: int, t: FixedType, layer: LayerPlan) -> int:
    bits = math.ceil(math.log2(size)) if size > 1 else 0
    if t.width < bits:
        raise layer.refuse(f"a table of {size} entries needs {bits} address bits; the addressing type {t} has {t.width}")
    return bits


def _effective_config(layer: LayerPlan) -> tuple[FixedType, FixedType, FixedType, FixedType, FixedType | None, int, int]:
    """(exp_table_t, inv_table_t, accum_t, inv_inp_t, inp_norm_t, exp_table_size, inv_table_size) as
    hls4ml's SoftmaxConfigTemplate writes them: a default inv_inp_t becomes the exp table type, a
    missing inp_norm_t the input type made unsigned (which also caps the exp table at 2^width)."""
    t, defaults = layer.types, set(layer.attrs.get("default_types", ()))
    table_size = int(layer.attrs.get("table_size", 1024))
    n_exp = int(layer.attrs.get("exp_table_size", table_size))
    n_inv = int(layer.attrs.get("inv_table_size", table_size))
    exp_t, inv_t = t["exp_table"], t["inv_table"]
    accum = t["accum"]  # the template computes a widened accum_t_str but writes accum_t.name (1.3.0)
    inv_inp = exp_t if "inv_inp" in defaults or "inv_inp" not in t else t["inv_inp"]
    norm = t.get("inp_norm")
    if str(layer.attrs.get("implementation", "stable")).lower() == "stable" and norm is None:
        source = layer.inputs[0].type
        s = int(source.signed)
        norm = FixedType(source.width - s, source.integer - s, False)
        if source.signed:
            n_exp = min(n_inv, 2 ** (source.width - s))
    return exp_t, inv_t, accum, inv_inp, norm, n_exp, n_inv


def _table_value(t: FixedType, bits: int) -> str:
    """The float value of a `t` whose top `bits` bits are i and the rest zero (as a C++ expression of i)."""
    raw = f"(int64_t)((uint64_t)ii << {t.width - bits})"
    if t.signed:
        raw = f"yfx::wrap<{t.width}, true, int64_t>({raw})"
    return f"(float)yfx::to_double<{t.fractional}>({raw})"


def emit_softmax(layer: LayerPlan) -> Emitted:
    implementation = str(layer.attrs.get("implementation", "stable")).lower()
    x, y = layer.inputs[0], layer.output
    n_in = y.size
    n_slice = n_in
    if int(layer.attrs.get("n_outer", 1)) != 1 or int(layer.attrs.get("n_inner", 1)) != 1:
        raise layer.refuse("softmax over an inner axis (n_outer/n_inner != 1) is not emulated")
    fn = layer.fn
    if implementation == "argmax":
        body = (f"    int best = 0;\n    for (int k = 1; k < {n_slice}; k++) if (x[k] > x[best]) best = k;\n"
                f"    for (int k = 0; k < {n_slice}; k++) y[k] = 0;\n"
                f"    y[best] = ({storage(y.type)})yfx::from_double<{args(y.type)}>(1.0);\n")
        return Emitted(unary_kernel(layer, body), unary_call(layer))
    if implementation not in ("stable", "latency"):
        raise layer.refuse(f"softmax implementation {implementation!r}; emulated: stable, latency, argmax")
    exp_t, inv_t, accum, inv_inp, norm, n_exp, n_inv = _effective_config(layer)
    address_t = norm if implementation == "stable" else x.type
    exp_bits = _address_bits(n_exp, address_t, layer)
    inv_bits = _address_bits(n_inv, inv_inp, layer)
    exp_scale = float(layer.attrs.get("exp_scale", 1.0))
    negate = "x = -x;\n    " if implementation == "stable" else ""
    decls = (f"static {storage(exp_t)} {fn}_exp[{n_exp}];\n"
             f"static {storage(inv_t)} {fn}_inv[{n_inv}];\n")
    init = (f"for (unsigned ii = 0; ii < {n_exp}; ii++) {{\n"
            f"    float x = {_table_value(address_t, exp_bits)} * (float){exp_scale!r};\n"
            f"    {negate}{fn}_exp[ii] = ({storage(exp_t)})yfx::from_double<{args(exp_t)}>((float)std::exp(x));\n"
            "}\n"
            f"for (unsigned ii = 0; ii < {n_inv}; ii++) {{\n"
            f"    float x = {_table_value(inv_inp, inv_bits)};\n"
            f"    {fn}_inv[ii] = ({storage(inv_t)})yfx::from_double<{args(inv_t)}>((float)(1 / x));\n"
            "}\n")
    if implementation == "stable":
        address = (f"        const int64_t d = {cast('(int64_t)x_max - (int64_t)x[k]', x.type.fractional, norm)};\n"
                   f"        const unsigned a = yfx::top_bits<{norm.width}, {exp_bits}>(d);\n")
        head = f"    int64_t x_max = x[0];\n    for (int k = 1; k < {n_slice}; k++) x_max = x[k] > x_max ? x[k] : x_max;\n"
    else:
        address = f"        const unsigned a = yfx::top_bits<{x.type.width}, {exp_bits}>((int64_t)x[k]);\n"
        head = ""
    sums = _tree([f"e[{k}]" for k in range(n_slice)], accum)
    body = (head +
            f"    int64_t e[{n_slice}];\n"
            f"    for (int k = 0; k < {n_slice}; k++) {{\n{address}"
            f"        e[k] = {cast(f'(int64_t){fn}_exp[a]', exp_t.fractional, accum)};\n"
            "    }\n"
            f"    auto add = [&](int64_t p, int64_t q) -> int64_t {{ return {cast('p + q', accum.fractional, accum)}; }};\n"
            f"    const int64_t sum = {cast(sums, accum.fractional, inv_inp)};\n"
            f"    const int64_t inv = {fn}_inv[yfx::top_bits<{inv_inp.width}, {inv_bits}>(sum)];\n"
            f"    for (int k = 0; k < {n_slice}; k++) y[k] = ({storage(y.type)})"
            f"{cast('e[k] * inv', accum.fractional + inv_t.fractional, y.type)};\n")
    if accum.width + inv_t.width > 63:
        raise layer.refuse(f"exp ({accum}) times 1/sum ({inv_t}) needs more than 63 bits")
    return Emitted(decls + unary_kernel(layer, body), unary_call(layer), init=init)


EMITTERS = {"Softmax": emit_softmax}
