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
    s_w, o_w, p_l, i_w = a["stride_width"], a["out_width"], a["pad_left"], a["in_width"]
    lanes = 16
    blocks = -(-o_w // lanes)
    padded = blocks * lanes * s_w + k_w  # the last block may read past the last output's window: zeros
    terms = k_w * c
    offsets = ", ".join(str(ch * padded + k) for k in range(k_w) for ch in range(c))  # hls4ml's term order
    fast = (f"        static thread_local T xt[{c}][{padded}];  // channels-first, zero-padded: positions side by side\n"
            f"        static thread_local T wt[{f}][{terms}];\n"
            f"        static thread_local T acc[{f}][{blocks * lanes}];\n"
            f"        static const int offsets[{terms}] = {{{offsets}}};\n"
            f"        static thread_local bool ready = false;\n"
            f"        if (!ready) {{ for (int j = 0; j < {f}; j++) for (int t = 0; t < {terms}; t++) "
            f"wt[j][t] = (T){layer.fn}_weight[t * {f} + j]; ready = true; }}\n"
            "        std::memset(xt, 0, sizeof(xt));\n"
            f"        for (int p = 0; p < {i_w} && p + {p_l} < {padded}; p++)\n"
            f"            for (int ch = 0; ch < {c}; ch++) xt[ch][p + {p_l}] = (T)x[p * {c} + ch];\n"
            f"        for (int j = 0; j < {f}; j++) for (int b = 0; b < {blocks}; b++)\n"
            f"            yfx::conv_block<{lanes}, {terms}, {s_w}, ACC_ARGS>(&acc[j][b * {lanes}], &xt[0][b * {lanes * s_w}], "
            f"offsets, wt[j], acc_init(j));\n"
            f"        for (int j = 0; j < {f}; j++) yfx::acc_finish<{o_w}, ACC_FINISH>(acc[j]);\n"
            f"        for (int o = 0; o < {o_w}; o++) for (int j = 0; j < {f}; j++) y[o * {f} + j] = result(acc[j][o]);\n")
    return mac_layer(layer, k_w * c, f, loops, order, fast)


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
    s_h, s_w, o_h, o_w = a["stride_height"], a["stride_width"], a["out_height"], a["out_width"]
    p_t, p_l, i_h, i_w = a["pad_top"], a["pad_left"], a["in_height"], a["in_width"]
    lanes = 16
    blocks = -(-o_w // lanes)
    ph, pw = (o_h - 1) * s_h + k_h, blocks * lanes * s_w + k_w
    terms = k_h * k_w * c
    offsets = ", ".join(str(ch * ph * pw + kh * pw + kw) for kh in range(k_h) for kw in range(k_w) for ch in range(c))
    fast = (f"        static thread_local T xt[{c}][{ph}][{pw}];  // channels-first, zero-padded\n"
            f"        static thread_local T wt[{f}][{terms}];\n"
            f"        static thread_local T acc[{f}][{o_h}][{blocks * lanes}];\n"
            f"        static const int offsets[{terms}] = {{{offsets}}};\n"
            f"        static thread_local bool ready = false;\n"
            f"        if (!ready) {{ for (int j = 0; j < {f}; j++) for (int t = 0; t < {terms}; t++) "
            f"wt[j][t] = (T){layer.fn}_weight[t * {f} + j]; ready = true; }}\n"
            "        std::memset(xt, 0, sizeof(xt));\n"
            f"        for (int r = 0; r < {i_h} && r + {p_t} < {ph}; r++) for (int q = 0; q < {i_w} && q + {p_l} < {pw}; q++)\n"
            f"            for (int ch = 0; ch < {c}; ch++) xt[ch][r + {p_t}][q + {p_l}] = (T)x[(r * {i_w} + q) * {c} + ch];\n"
            f"        for (int j = 0; j < {f}; j++) for (int o = 0; o < {o_h}; o++) for (int b = 0; b < {blocks}; b++)\n"
            f"            yfx::conv_block<{lanes}, {terms}, {s_w}, ACC_ARGS>(&acc[j][o][b * {lanes}], "
            f"&xt[0][o * {s_h}][b * {lanes * s_w}], offsets, wt[j], acc_init(j));\n"
            f"        for (int j = 0; j < {f}; j++) for (int o = 0; o < {o_h}; o++) yfx::acc_finish<{o_w}, ACC_FINISH>(acc[j][o]);\n"
            f"        for (int o = 0; o < {o_h}; o++) for (int q = 0; q < {o_w}; q++) for (int j = 0; j < {f}; j++)\n"
            f"            y[(o * {o_w} + q) * {f} + j] = result(acc[j][o][q]);\n")
    return mac_layer(layer, k_h * k_w * c, f, loops, order, fast)


EMITTERS = {"Conv1D": emit_conv1d, "PointwiseConv1D": emit_conv1d, "Conv2D": emit_conv2d, "PointwiseConv2D": emit_conv2d}
