"""Dense (hls4ml `dense_latency` / `dense_resource`, io_parallel): y = res_t(bias + sum_i accum_t(x_i * w_ij)).

Per output the sum starts from the bias cast to accum_t and adds the products in input order;
with a wrapping accumulator the order cannot matter, with a saturating one it does, and only the
Latency order (inputs in order) is emulated for those.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.fixed.ops._common import mac_work, requant, weight_array
from yukti.runners.fixed.plan import Emitted, LayerPlan
from yukti.runners.fixed.types import args, storage


def check_strategy(layer: LayerPlan) -> list[int] | None:
    """None for the Latency layout; for Resource, the flat weight order that undoes hls4ml's
    transpose (it moves the filter/output axis first for its resource kernels)."""
    strategy = str(layer.attrs.get("strategy", "latency")).lower()
    if strategy not in ("latency", "resource"):
        raise layer.refuse(f"strategy {strategy!r}: the fixed backend emulates Latency and Resource")
    if strategy == "latency":
        return None
    if layer.types["accum"].overflow != "WRAP" and (layer.kind != "Dense" or int(layer.attrs.get("reuse_factor", 1)) != 1):
        raise layer.refuse("Resource strategy with a saturating accumulator: hls4ml's resource kernels add the "
                           "products in reuse order, which the fixed backend emulates for Dense at reuse factor 1 "
                           "only; use a wrapping accum type or the Latency strategy")
    shape = layer.weights["weight"].shape
    if not layer.attrs.get("_weights_transposed"):
        return None
    return [int(i) for i in np.moveaxis(np.arange(int(np.prod(shape))).reshape(shape), 0, -1).reshape(-1)]


def mac_layer(layer: LayerPlan, n_in: int, n_out: int, loops: str, order: list[int] | None,
              fast: str | None = None) -> Emitted:
    """A kernel whose body (`loops`) calls MAC(x value, weight row pointer) for each term of each
    output position, between ACC_START and ACC_END markers; shared by Dense and the convolutions.
    `fast`, when given, is the body used without overflow counting (the same arithmetic in another
    loop order; it may use T, acc_init(j), result(v), ACC_ARGS / ACC_FINISH (template arguments of
    yfx::mac_positions / yfx::acc_finish) and the weight array)."""
    x, t = layer.inputs[0], layer.types
    w_decl, w_init, w = weight_array(layer, "weight", order=order)
    has_bias = "bias" in layer.weights
    b_decl, b_init, b = weight_array(layer, "bias") if has_bias else ("", "", "")
    acc, res = t["accum"], layer.output.type
    bias_t = layer.weights["bias"].type if has_bias else None
    T, f_prod = mac_work(layer, x.type, layer.weights["weight"].type, acc, bias_t, res, n_in)
    acc_args = f"{acc.width}, {acc.fractional}, {'true' if acc.signed else 'false'}, yfx::{acc.rounding}, yfx::{acc.overflow}"
    init_acc = (f"yfx::requant<{bias_t.fractional}, {args(acc)}, {T}>({b}[j])" if has_bias else "0")
    init_acc_counted = (f"(T)yfx::requant_counted<{bias_t.fractional}, {args(acc)}, {T}>({b}[j], bias_over)"
                        if has_bias else "0")
    start = (f"        T acc[{n_out}];\n"
             f"        int64_t exact[{n_out}];\n"
             f"        bool changed[{n_out}];\n"
             f"        for (int j = 0; j < {n_out}; j++) {{\n"
             f"            if constexpr (COUNT) {{ uint64_t bias_over = 0; acc[j] = {init_acc_counted}; "
             f"exact[j] = acc[j]; changed[j] = bias_over != 0; }}\n"
             f"            else acc[j] = {init_acc};\n"
             f"        }}\n")
    end = (f"        if constexpr (COUNT) yfx::acc_finish_counted<{n_out}, {acc.width}, {'true' if acc.signed else 'false'}, "
           f"yfx::{acc.overflow}, T, int64_t>(acc, exact, changed, ovf[0]);\n"
           f"        else yfx::acc_finish<{n_out}, {acc.width}, {'true' if acc.signed else 'false'}, yfx::{acc.overflow}, T>(acc);\n"
           f"        for (int j = 0; j < {n_out}; j++) yo[j] = ({storage(res)})"
           f"{requant('acc[j]', acc.fractional, res, 'T', 'ovf[1]')};\n")
    mac = (f"#define MAC(XV, WROW) do {{ if constexpr (COUNT) yfx::mac_counted<{n_out}, {f_prod}, {acc_args}, T, int64_t>"
           f"(acc, exact, changed, (XV), (WROW)); else yfx::mac<{n_out}, {f_prod}, {acc_args}, T>(acc, (XV), (WROW)); }} while (0)\n")
    body = loops.replace("ACC_START\n", start).replace("ACC_END\n", end)
    if fast is not None:
        helpers = (f"        auto acc_init = [](int j) -> T {{ return {init_acc}; }};\n"
                   f"        auto result = [](T v) -> {storage(res)} {{ return ({storage(res)})yfx::requant<{acc.fractional}, "
                   f"{args(res)}, T>(v); }};\n")
        fast = helpers + (fast.replace("ACC_ARGS", f"{f_prod}, {acc_args}, T")
                          .replace("ACC_FINISH", f"{acc.width}, {'true' if acc.signed else 'false'}, yfx::{acc.overflow}, T"))
        body = f"    if constexpr (COUNT) {{\n{body}    }} else {{\n{fast}    }}\n"
    decls = (w_decl + b_decl + mac +
             f"template <bool COUNT> static inline void {layer.fn}(const {storage(x.type)} *__restrict x, "
             f"{storage(res)} *__restrict y, uint64_t *ovf) {{\n"
             f"    using T = {T};\n{body}}}\n#undef MAC\n")
    return Emitted(decls, f"{layer.fn}<COUNT>({x.cname}, {layer.output.cname}, ovf + OVF_{layer.fn});\n",
                   init=w_init + b_init, counters=("accum", "result"))


def emit_dense(layer: LayerPlan) -> Emitted:
    order = check_strategy(layer)
    n_in, n_out = layer.int_attr("n_in"), layer.int_attr("n_out")
    expected = (n_in, n_out) if order is None else (n_out, n_in)
    if layer.weights["weight"].shape != expected:
        raise layer.refuse(f"weight shape {layer.weights['weight'].shape}, expected {expected}")
    loops = ("    {\n"
             "        auto *yo = y;\n"
             "ACC_START\n"
             f"        for (int i = 0; i < {n_in}; i++) MAC(x[i], {layer.fn}_weight + i * {n_out});\n"
             "ACC_END\n"
             "    }\n")
    return mac_layer(layer, n_in, n_out, loops, order)


EMITTERS = {"Dense": emit_dense}
