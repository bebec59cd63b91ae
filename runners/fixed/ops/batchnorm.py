"""BatchNormalization as hls4ml's `normalize` (io_parallel): res_t(x * scale + bias), the product and
the sum exact (ap_fixed arithmetic widens), one cast at the end; per channel when n_filt is set."""

from __future__ import annotations

from yukti.runners.fixed.ops._common import stored, unary_call, unary_kernel, weight_array
from yukti.runners.fixed.plan import Emitted, LayerPlan


def emit_batchnorm(layer: LayerPlan) -> Emitted:
    x, y = layer.inputs[0], layer.output
    s_decl, s_init, scale = weight_array(layer, "scale")
    b_decl, b_init, bias = weight_array(layer, "bias")
    s_t, b_t = layer.weights["scale"].type, layer.weights["bias"].type
    n_filt = int(layer.attrs.get("n_filt", -1))
    n_scale = len(layer.weights["scale"].literals)
    f_prod = x.type.fractional + s_t.fractional
    f_sum = max(f_prod, b_t.fractional)
    bits = max(x.type.width + s_t.width + f_sum - f_prod, b_t.width + f_sum - b_t.fractional) + 1
    if bits > 63:
        raise layer.refuse(f"x * scale + bias needs {bits} bits exactly; the fixed backend holds 63")
    index = "k" if n_filt in (-1, 0) else f"k % {n_filt}"
    if n_filt in (-1, 0) and n_scale != x.size:
        raise layer.refuse(f"{n_scale} scales for {x.size} inputs")
    exact = (f"(int64_t)x[k] * {scale}[{index}] * (1LL << {f_sum - f_prod}) + "
             f"(int64_t){bias}[{index}] * (1LL << {f_sum - b_t.fractional})")
    decls = s_decl + b_decl + unary_kernel(
        layer, f"    for (int k = 0; k < {x.size}; k++) y[k] = {stored(exact, f_sum, y.type)};\n")
    return Emitted(decls, unary_call(layer), init=s_init + b_init)


# ApplyAlpha (qonnx's scale/bias, e.g. a MatMul's bias Add) is a BatchNormalization subclass in hls4ml: the same kernel
EMITTERS = {"BatchNormalization": emit_batchnorm, "ApplyAlpha": emit_batchnorm}
