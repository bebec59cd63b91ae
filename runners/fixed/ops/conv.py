"""Conv1D / Conv2D, channels-last (hls4ml `conv_1d_latency_cl`, `conv_2d_latency_cl`, pointwise and
resource forms, io_parallel): per output pixel, a dense product of the window (kernel positions
in order, channels inside) with the (k..., c, f) weights, each product cast to accum_t, starting
from the bias. Padded positions hold zero, whose products add nothing in any mode; they are skipped.
"""

from __future__ import annotations

from yukti.runners.fixed.ops.dense import check_strategy, mac_layer
from yukti.runners.fixed.plan import Emitted, LayerPlan


def _check(layer: LayerPlan, keys: tuple[str, ...]) -> tuple[dict[str, int], list[int] | None]:
    order = check_strategy(layer)
    values = {key: layer.int_attr(key) for key in keys}
    for key in ("dilation", "dilation_width", "dilation_height"):
        if key in layer.attrs and int(layer.attrs[key]) != 1:
            raise layer.refuse(f"{key} = {layer.attrs[key]}; dilated convolutions are not emulated")
    return values, order


def emit_conv1d(layer: LayerPlan) -> Emitted:
    a, order = _check(layer, ("in_width", "n_chan", "n_filt", "filt_width", "stride_width", "out_width", "pad_left"))
    k_w, c, f = a["filt_width"], a["n_chan"], a["n_filt"]
    if layer.weights["weight"].shape != ((k_w, c, f) if order is None else (f, k_w, c)):
        raise layer.refuse(f"weight shape {layer.weights['weight'].shape}, expected ({k_w}, {c}, {f})")
    loops = (f"    for (int o = 0; o < {a['out_width']}; o++) {{\n"
             f"        auto *yo = y + o * {f};\n"
             "ACC_START\n"
             f"        for (int k = 0; k < {k_w}; k++) {{\n"
             f"            const int p = o * {a['stride_width']} - {a['pad_left']} + k;\n"
             f"            if (p < 0 || p >= {a['in_width']}) continue;\n"
             f"            for (int ch = 0; ch < {c}; ch++) MAC(x[p * {c} + ch], {layer.fn}_weight + (k * {c} + ch) * {f});\n"
             "        }\n"
             "ACC_END\n"
             "    }\n")
    return mac_layer(layer, k_w * c, f, loops, order)


def emit_conv2d(layer: LayerPlan) -> Emitted:
    a, order = _check(layer, ("in_height", "in_width", "n_chan", "n_filt", "filt_height", "filt_width", "stride_height",
                       "stride_width", "out_height", "out_width", "pad_top", "pad_left"))
    k_h, k_w, c, f = a["filt_height"], a["filt_width"], a["n_chan"], a["n_filt"]
    if layer.weights["weight"].shape != ((k_h, k_w, c, f) if order is None else (f, k_h, k_w, c)):
        raise layer.refuse(f"weight shape {layer.weights['weight'].shape}, expected ({k_h}, {k_w}, {c}, {f})")
    loops = (f"    for (int oh = 0; oh < {a['out_height']}; oh++) for (int ow = 0; ow < {a['out_width']}; ow++) {{\n"
             f"        auto *yo = y + (oh * {a['out_width']} + ow) * {f};\n"
             "ACC_START\n"
             f"        for (int kh = 0; kh < {k_h}; kh++) {{\n"
             f"            const int ph = oh * {a['stride_height']} - {a['pad_top']} + kh;\n"
             f"            if (ph < 0 || ph >= {a['in_height']}) continue;\n"
             f"            for (int kw = 0; kw < {k_w}; kw++) {{\n"
             f"                const int pw = ow * {a['stride_width']} - {a['pad_left']} + kw;\n"
             f"                if (pw < 0 || pw >= {a['in_width']}) continue;\n"
             f"                for (int ch = 0; ch < {c}; ch++) MAC(x[(ph * {a['in_width']} + pw) * {c} + ch], "
             f"{layer.fn}_weight + ((kh * {k_w} + kw) * {c} + ch) * {f});\n"
             "            }\n"
             "        }\n"
             "ACC_END\n"
             "    }\n")
    return mac_layer(layer, k_h * k_w * c, f, loops, order)


EMITTERS = {"Conv1D": emit_conv1d, "PointwiseConv1D": emit_conv1d, "Conv2D": emit_conv2d, "PointwiseConv2D": emit_conv2d}
