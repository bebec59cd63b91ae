"""Element-wise activations as hls4ml's nnet_activation.h computes them: linear and ReLU as casts,
LeakyReLU with alpha in its param type, sigmoid and tanh through hls4ml's lookup tables (entries
computed in single precision from the same expressions, indices truncated toward zero, clamped)."""

from __future__ import annotations

from yukti.runners.fixed.ops._common import stored, unary_call, unary_kernel
from yukti.runners.fixed.plan import Emitted, LayerPlan
from yukti.runners.fixed.types import args, storage

# activation name -> (table function of the float x, half range of the table's input)
TABLES = {
    "sigmoid": ("(float)(1.0 / (1 + std::exp(-x)))", 8),
    "tanh": ("std::tanh(x)", 4),
}


def _kernel(layer: LayerPlan, body: str) -> str:
    return unary_kernel(layer, f"    for (int k = 0; k < {layer.output.size}; k++) {{\n{body}    }}\n")


def emit_activation(layer: LayerPlan) -> Emitted:
    kind = str(layer.attrs.get("activation", layer.kind)).lower()
    x, y = layer.inputs[0].type, layer.output.type
    if kind in ("linear",):
        return Emitted(_kernel(layer, f"        y[k] = {stored('(int64_t)x[k]', x.fractional, y)};\n"), unary_call(layer))
    if kind == "relu":
        body = f"        y[k] = x[k] > 0 ? {stored('(int64_t)x[k]', x.fractional, y)} : 0;\n"
        return Emitted(_kernel(layer, body), unary_call(layer))
    if kind in TABLES:
        return _table_activation(layer, kind)
    if kind in ("leaky_relu", "leakyrelu"):
        return emit_leaky_relu(layer)
    raise layer.refuse(f"activation {kind!r}; emulated: linear, relu, leaky_relu, sigmoid, tanh, softmax")


def _table_activation(layer: LayerPlan, kind: str) -> Emitted:
    formula, half_range = TABLES[kind]
    n = layer.int_attr("table_size")
    table_t = layer.types["table"]
    x, y = layer.inputs[0].type, layer.output.type
    table = f"{layer.fn}_table"
    decls = f"static {storage(table_t)} {table}[{n}];\n"
    init = (f"for (int ii = 0; ii < {n}; ii++) {{\n"
            f"    float x = 2 * {half_range}.0 * (ii - float({n}) / 2.0) / float({n});\n"
            f"    {table}[ii] = ({storage(table_t)})yfx::from_double<{args(table_t)}>({formula});\n"
            "}\n")
    # data_round = data * table_size / (2 * half_range), truncated toward zero like ap_fixed -> int
    scale = 2 * half_range
    if x.fractional >= 0:
        index = f"(int64_t)x[k] * {n} / ({scale}LL << {x.fractional})"
    else:
        index = f"((int64_t)x[k] * {n} << {-x.fractional}) / {scale}LL"
    body = (f"        int64_t index = {index} + {half_range * n // scale};\n"
            f"        index = index < 0 ? 0 : (index > {n - 1} ? {n - 1} : index);\n"
            f"        y[k] = {stored(f'(int64_t){table}[index]', table_t.fractional, y)};\n")
    return Emitted(decls + _kernel(layer, body), unary_call(layer), init=init)


def emit_leaky_relu(layer: LayerPlan) -> Emitted:
    alpha = layer.attrs.get("activ_param")
    if not isinstance(alpha, (int, float)):
        raise layer.refuse(f"leaky ReLU alpha {alpha!r} is not a number")
    x, y = layer.inputs[0].type, layer.output.type
    param_t = layer.types.get("param")
    if param_t is None:
        raise layer.refuse("hls4ml gave no param_t for alpha")
    decls = f"static int64_t {layer.fn}_alpha;\n"
    init = f"{layer.fn}_alpha = yfx::from_double<{args(param_t)}>({float(alpha)!r});\n"
    f_prod = x.fractional + param_t.fractional
    body = (f"        y[k] = x[k] > 0 ? {stored('(int64_t)x[k]', x.fractional, y)} : "
            f"{stored(f'(int64_t)x[k] * {layer.fn}_alpha', f_prod, y)};\n")
    if x.width + param_t.width > 63:
        raise layer.refuse(f"alpha ({param_t}) times the input ({x}) needs more than 63 bits")
    return Emitted(decls + _kernel(layer, body), unary_call(layer), init=init)


EMITTERS = {"Activation": emit_activation, "ReLU": emit_activation, "LeakyReLU": emit_leaky_relu,
            "ParametrizedActivation": emit_activation}
