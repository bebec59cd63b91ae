"""Pooling as hls4ml's nnet_pooling.h (io_parallel, channels-last). Max: the window's largest raw
value (padding holds the pattern with only the top bit set), cast to accum_t, then to the result
type. Average: accum_t running sum (a cast per add), divided by the count with truncation toward
zero (ap_fixed's `/=` by an integer keeps the fractional bits), then to the result type. Global
pooling is one window over the whole width (height)."""

from __future__ import annotations

from yukti.fixed_point import FixedType
from yukti.runners.fixed.ops._common import cast
from yukti.runners.fixed.plan import Emitted, LayerPlan
from yukti.runners.fixed.types import storage


def _pad(t: FixedType) -> str:
    # pad_val<Max>: x = 0; x[x.width - 1] = 1 -> the most negative signed value, or 2^(W-1) unsigned
    return f"(int64_t)yfx::wrap<{t.width}, {'true' if t.signed else 'false'}, int64_t>((int64_t)((uint64_t)1 << {t.width - 1}))"


def _window(layer: LayerPlan, op: str, positions: str, valid: str, index: str, pool_size: int, count_pad: bool) -> str:
    """The body for one output value; `positions` opens loops over the window (closed here)."""
    x, y, acc = layer.inputs[0].type, layer.output.type, layer.types["accum"]
    close = "}" * positions.count("{")
    if op == "max":
        return (f"{positions}\n"
                f"                const int64_t v = ({valid}) ? (int64_t)x[{index}] : {_pad(x)};\n"
                "                if (first || v > best) best = v;\n"
                f"                first = false;\n            {close}\n"
                f"            const int64_t a = {cast('best', x.fractional, acc, 'ovf[0]')};\n"
                f"            *out = ({storage(y)}){cast('a', acc.fractional, y, 'ovf[1]')};\n")
    divisor = str(pool_size) if count_pad else "overlap"
    fm = max(x.fractional, acc.fractional)  # the exact sum of an accum_t and a data_T
    return (f"{positions}\n"
            f"                if (!({valid})) continue;\n"
            f"                sum = {cast(f'(sum << {fm - acc.fractional}) + ((int64_t)x[{index}] << {fm - x.fractional})', fm, acc, 'ovf[0]')};\n"
            f"                overlap++;\n            {close}\n"
            f"            const int64_t a = sum / (int64_t)({divisor} > 0 ? {divisor} : 1);\n"
            f"            *out = ({storage(y)}){cast('a', acc.fractional, y, 'ovf[1]')};\n")


def _op(layer: LayerPlan) -> str:
    op = str(layer.attrs.get("pool_op", "")).lower()
    if op not in ("max", "average"):
        raise layer.refuse(f"pool_op {op!r}; emulated: Max, Average")
    return op


def _per_output(layer: LayerPlan, loops: str, out_index: str, body: str) -> str:
    """`loops` (C++ for-headers) over the output values, each running `body` on its window into
    y[out_index] (the window state declared here)."""
    return (f"{loops} {{\n"
            f"        {storage(layer.output.type)} *out = y + {out_index};\n"
            "        int64_t best = 0, sum = 0; bool first = true; int overlap = 0; (void)first; (void)overlap;\n"
            "        {\n" + body + "        }\n    }\n")


def _kernel(layer: LayerPlan, loops: str) -> Emitted:
    x, y = layer.inputs[0], layer.output
    decl = (f"template <bool COUNT> static inline void {layer.fn}(const {storage(x.type)} *__restrict x, "
            f"{storage(y.type)} *__restrict y, uint64_t *ovf) {{\n{loops}}}\n")
    return Emitted(decl, f"{layer.fn}<COUNT>({x.cname}, {y.cname}, ovf + OVF_{layer.fn});\n", counters=("accum", "result"))


def emit_pool1d(layer: LayerPlan) -> Emitted:
    op = _op(layer)
    n_in, n_filt, width, stride = (layer.int_attr(k) for k in ("n_in", "n_filt", "pool_width", "stride_width"))
    pad_left, pad_right = int(layer.attrs.get("pad_left", 0)), int(layer.attrs.get("pad_right", 0))
    n_out = layer.int_attr("n_out")
    padded = n_in + pad_left + pad_right
    restricted = (padded - width) // stride * stride + 1
    if (restricted + stride - 1) // stride != n_out:
        raise layer.refuse(f"n_out {n_out} does not match the window count {(restricted + stride - 1) // stride}")
    positions = f"            for (int jj = 0; jj < {width}; jj++) {{"
    valid = f"ii + jj >= {pad_left} && ii + jj < {n_in + pad_left}"
    index = f"(ii + jj - {pad_left}) * {n_filt} + ff"
    body = _window(layer, op, positions, valid, index, width, bool(layer.attrs.get("count_pad", False)))
    loops = f"    for (int ff = 0; ff < {n_filt}; ff++) for (int ii = 0; ii < {restricted}; ii += {stride})"
    return _kernel(layer, _per_output(layer, loops, f"(ii / {stride}) * {n_filt} + ff", body))


def emit_pool2d(layer: LayerPlan) -> Emitted:
    op = _op(layer)
    keys = ("in_height", "in_width", "n_filt", "pool_height", "pool_width", "stride_height", "stride_width",
            "out_height", "out_width")
    a = {k: layer.int_attr(k) for k in keys}
    pt, pb, pl, pr = (int(layer.attrs.get(k, 0)) for k in ("pad_top", "pad_bottom", "pad_left", "pad_right"))
    rh = (a["in_height"] + pt + pb - a["pool_height"]) // a["stride_height"] * a["stride_height"] + 1
    rw = (a["in_width"] + pl + pr - a["pool_width"]) // a["stride_width"] * a["stride_width"] + 1
    positions = (f"            for (int kk = 0; kk < {a['pool_height']}; kk++) {{ "
                 f"for (int ll = 0; ll < {a['pool_width']}; ll++) {{")
    valid = (f"ii + kk >= {pt} && ii + kk < {a['in_height'] + pt} && jj + ll >= {pl} && jj + ll < {a['in_width'] + pl}")
    index = f"((ii + kk - {pt}) * {a['in_width']} + (jj + ll - {pl})) * {a['n_filt']} + ff"
    body = _window(layer, op, positions, valid, index, a["pool_height"] * a["pool_width"],
                   bool(layer.attrs.get("count_pad", False)))
    loops = (f"    for (int ff = 0; ff < {a['n_filt']}; ff++) for (int ii = 0; ii < {rh}; ii += {a['stride_height']}) "
             f"for (int jj = 0; jj < {rw}; jj += {a['stride_width']})")
    out = f"((ii / {a['stride_height']}) * {a['out_width']} + jj / {a['stride_width']}) * {a['n_filt']} + ff"
    return _kernel(layer, _per_output(layer, loops, out, body))


def emit_global_pool(layer: LayerPlan) -> Emitted:
    op = _op(layer)
    x = layer.inputs[0]
    n_filt = layer.int_attr("n_filt")
    n = x.size // n_filt
    positions = f"            for (int jj = 0; jj < {n}; jj++) {{"
    body = _window(layer, op, positions, "true", f"jj * {n_filt} + ff", n, True)
    return _kernel(layer, _per_output(layer, f"    for (int ff = 0; ff < {n_filt}; ff++)", "ff", body))


EMITTERS = {"Pooling1D": emit_pool1d, "Pooling2D": emit_pool2d, "GlobalPooling1D": emit_global_pool,
            "GlobalPooling2D": emit_global_pool}
