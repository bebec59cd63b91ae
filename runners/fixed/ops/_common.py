"""Pieces every emitter uses: weight arrays quantized once at load, conversions with and without
overflow counting, and the working integer of a multiply-accumulate."""

from __future__ import annotations

import math

from yukti.fixed_point import FixedType
from yukti.runners.fixed.plan import LayerPlan
from yukti.runners.fixed.types import args, storage, work


def weight_array(layer: LayerPlan, key: str, *, order: list[int] | None = None) -> tuple[str, str, str]:
    """(declarations, init statements, C++ name) of weight `key`: hls4ml's decimal literals as
    doubles, and the raw integers of its type filled from them once (ap_fixed's double conversion),
    in `order` (a permutation of flat indices) when given."""
    weight = layer.weights[key]
    name = f"{layer.fn}_{key}"
    literals = weight.literals if order is None else [weight.literals[i] for i in order]
    n = len(literals)
    rows = ",\n    ".join(", ".join(literals[i:i + 8]) for i in range(0, n, 8))
    decls = (f"static const double {name}_text[{n}] = {{\n    {rows}}};\n"
             f"alignas(64) static {storage(weight.type)} {name}[{n}];\n")
    init = (f"for (int k = 0; k < {n}; k++) {name}[k] = ({storage(weight.type)})yfx::from_double<{args(weight.type)}>"
            f"({name}_text[k]);\n")
    return decls, init, name


def requant(value: str, f_in: int, t: FixedType, work_type: str, counter: str | None) -> str:
    """C++ expression: `value` (exact raw at f_in fractional bits, in work_type) brought into `t`;
    counted into `counter` (an lvalue) in the COUNT instantiation when given."""
    plain = f"yfx::requant<{f_in}, {args(t)}, {work_type}>({value})"
    if counter is None:
        return plain
    counted = f"yfx::requant_counted<{f_in}, {args(t)}, {work_type}>({value}, {counter})"
    return f"(COUNT ? {counted} : {plain})"


def mac_work(layer: LayerPlan, x: FixedType, w: FixedType, acc: FixedType, bias: FixedType | None, res: FixedType,
             n_terms: int) -> tuple[str, int]:
    """The working integer of a multiply-accumulate and the fractional bits of its products; every
    exact intermediate must fit (products aligned to the accumulator, sums, the bias and result
    alignments, and the counting path's exact sums)."""
    f_prod = x.fractional + w.fractional
    bits = max(x.width + w.width + max(0, acc.fractional - f_prod), acc.width + 1,
               (bias.width + max(0, acc.fractional - bias.fractional)) if bias else 0,
               acc.width + max(0, res.fractional - acc.fractional))
    exact_sum = acc.width + 1 + math.ceil(math.log2(n_terms + 1))
    if exact_sum > 64:
        raise layer.refuse(f"an accumulator of {acc.width} bits over {n_terms} terms needs {exact_sum} bits to count "
                           "overflows exactly; the fixed backend holds 64")
    return work(bits, f"layer {layer.name!r} ({layer.kind})"), f_prod


def cast(value: str, f_in: int, t: FixedType, counter: str = "ovf[0]") -> str:
    """`requant` of an int64_t value, counted into `counter` (the layer's first counter by default)."""
    return requant(value, f_in, t, "int64_t", counter)


def stored(value: str, f_in: int, t: FixedType, counter: str = "ovf[0]") -> str:
    """`cast`, as the integer type that holds `t`'s raw values."""
    return f"({storage(t)}){cast(value, f_in, t, counter)}"


def unary_kernel(layer: LayerPlan, body: str) -> str:
    """The kernel of a one-input layer: `template <bool COUNT> void L<i>(x, y, ovf) { body }`."""
    return (f"template <bool COUNT> static inline void {layer.fn}(const {storage(layer.inputs[0].type)} *__restrict x, "
            f"{storage(layer.output.type)} *__restrict y, uint64_t *ovf) {{\n{body}}}\n")


def unary_call(layer: LayerPlan) -> str:
    return f"{layer.fn}<COUNT>({layer.inputs[0].cname}, {layer.output.cname}, ovf + OVF_{layer.fn});\n"
