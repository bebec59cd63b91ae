"""Conv, 1-D and 2-D (pads, auto_pad, strides, dilations, groups incl. depthwise, optional bias).

Per-sample layout is (C, H, W) or (C, L); a 1-D convolution runs as a 2-D one with H = 1.

Each sample is first copied into a zero-bordered buffer on the stack, so taps need no bounds
checks; with a column stride s > 1 the copy also splits the columns by phase (column mod s), which
makes every tap read unit-stride runs. Outputs are then computed in register blocks of vector
accumulators (`vfN`, N lanes: the target ISA's width, runners/cpp/isa.py, whose register count also
bounds the blocks) held across the whole (input channel, kh, kw) loop, with weights re-laid out at
generation time so each block reads them contiguously. Two block shapes, picked per layer by a
small cost model:

* spatial: MB output channels x V vectors of N neighbouring outputs along a row; each tap loads
  V input vectors and broadcasts MB weights. With unit row stride all rows run as one long "flat"
  row on the padded width (columns falling in the border are computed and dropped), otherwise row
  by row. Best for wide images, depthwise and 1-D convolutions.
* channel: P output positions x V vectors of N output channels; each tap loads V weight vectors
  and broadcasts P inputs. Best for small images with many channels (no border waste).

Every output is accumulated in its own lane, bias first and then the taps in (ci, kh, kw) order:
no float reduction is reordered, so no -ffast-math is needed.

Fallback (inputs too large for the stack buffer): one axpy per tap over the output range where
that tap reads inside the image; the ranges are worked out here, at generation time.

Over 400 lines on purpose: the cost model picks between the three strategies, which share the
window geometry (also used by pool.py) and the weight layouts; split, each part would need the others.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.isa import Isa
from yukti.runners.cpp.ops import emits, unsupported

SCRATCH_LIMIT_FLOATS = 48 * 1024  # stack buffers of one Conv (192 KiB): padded input and one output block


def window_geometry(node: ir.Node, in_sizes: Sequence[int], kernel: Sequence[int], strides: Sequence[int],
                    dilations: Sequence[int], *, ceil_mode: bool = False) -> tuple[list[int], list[int], list[int]]:
    """(pads_begin, pads_end, out_sizes) per spatial axis, as ONNX runtimes compute them.

    With ceil_mode a last window that would start in the end padding is dropped (onnxruntime, the
    ONNX reference evaluator and PyTorch agree on this)."""
    rank = len(in_sizes)
    auto_pad = node.attr("auto_pad", "NOTSET") or "NOTSET"
    effective = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        outs = [-(-i // s) for i, s in zip(in_sizes, strides)]
        begin, end = [], []
        for i, s, e, o in zip(in_sizes, strides, effective, outs):
            total = max(0, (o - 1) * s + e - i)
            small, large = total // 2, total - total // 2
            begin.append(small if auto_pad == "SAME_UPPER" else large)
            end.append(large if auto_pad == "SAME_UPPER" else small)
        return begin, end, outs
    if auto_pad == "VALID":
        begin, end = [0] * rank, [0] * rank
    elif auto_pad == "NOTSET":
        pads = list(node.attr("pads", [0] * (2 * rank)))
        if len(pads) != 2 * rank:
            raise unsupported(node, f"pads has {len(pads)} values for {rank} spatial axes")
        if any(p < 0 for p in pads):
            raise unsupported(node, f"negative pads {pads}")
        begin, end = pads[:rank], pads[rank:]
    else:
        raise unsupported(node, f"auto_pad={auto_pad!r}")
    outs = []
    for i, s, e, b, p in zip(in_sizes, strides, effective, begin, end):
        span = i + b + p - e
        if span < 0:
            raise unsupported(node, f"the window ({e}) is larger than the padded input ({i + b + p})")
        if ceil_mode:
            o = -(-span // s) + 1
            if (o - 1) * s >= i + b:
                o -= 1
        else:
            o = span // s + 1
        outs.append(o)
    return begin, end, outs


def spatial_attrs(node: ir.Node, rank: int, kernel: list[int]) -> tuple[list[int], list[int]]:
    strides = list(node.attr("strides", [1] * rank))
    dilations = list(node.attr("dilations", [1] * rank))
    if len(strides) != rank or len(dilations) != rank:
        raise unsupported(node, f"strides {strides} / dilations {dilations} do not match {rank} spatial axes")
    if any(s < 1 for s in strides) or any(d < 1 for d in dilations):
        raise unsupported(node, f"strides {strides} and dilations {dilations} must be >= 1")
    if any(k < 1 for k in kernel):
        raise unsupported(node, f"kernel shape {kernel}")
    return strides, dilations


def check_output_shape(node: ir.Node, ctx: EmitContext, y: str, channels: int, outs: list[int]) -> None:
    expected = (channels, *outs)
    inferred = tuple(ctx.value(y).shape)
    if inferred != expected:
        raise unsupported(node, f"ONNX shape inference gives output shape {inferred} but the window arithmetic of "
                                f"onnxruntime gives {expected} (ceil_mode/auto_pad corner case)")


RESERVED_REGISTERS = 4  # of the ISA's vector registers, kept for loaded vectors and broadcasts (12 of 16 accumulate)
BLOCK_OVERHEAD = 24  # rough cycles per register block outside its tap loop (set-up, stores)


def unaligned_load(isa: Isa) -> float:
    """Relative cost of an input vector load at any float offset: 1, plus the share of such loads
    that cross a 64-byte cache line (about half for 8 lanes, nearly all for 16)."""
    return 1.0 + (4 * isa.lanes - 4) / 64


def _fits(a: int, b: int, isa: Isa) -> bool:
    """a broadcasts x b loaded vectors: a*b accumulators, b vectors kept, one broadcast in flight."""
    registers = isa.vector_registers
    return a * b <= registers - RESERVED_REGISTERS and (a == 1 or a * b + b + 1 <= registers - 1)


def _cover(rows_a: int, rows_b: int, k: int, vector_load: float, isa: Isa) -> tuple[int, int, float]:
    """Best (a, b) block to cover rows_a x rows_b (remainders take smaller blocks) and its cost in
    cycles: per tap a*b FMAs, a broadcasts and b vector loads (each costing `vector_load`: more
    than 1 when unaligned, as the spatial blocks' input loads are), two of each per cycle."""
    best = (1, 1, float("inf"))
    most = isa.vector_registers - RESERVED_REGISTERS
    for a in range(1, min(rows_a, most) + 1):
        for b in range(1, min(rows_b, most) + 1):
            if not _fits(a, b, isa):
                continue
            (fa, ra), (fb, rb) = divmod(rows_a, a), divmod(rows_b, b)
            cost = 0.0
            for count_a, size_a in ((fa, a), (int(ra > 0), ra)):
                for count_b, size_b in ((fb, b), (int(rb > 0), rb)):
                    per_tap = max(size_a * size_b, size_a + vector_load * size_b) / 2
                    cost += count_a * count_b * (k * per_tap + BLOCK_OVERHEAD)
            if cost < best[2]:
                best = (a, b, cost)
    return best


def _activation(node: ir.Node) -> str:
    """Expression on `v` for an activation fused into this node by codegen (NaN stays NaN)."""
    act = node.attr("fused_activation", "") or ""
    if act == "Relu":
        return "v < 0.0f ? 0.0f : v"
    if act:
        raise unsupported(node, f"fused activation {act!r}")
    return "v"


def _split(total: int, step: int, var: str, emit: Callable[[int], list[str]]) -> list[str]:
    """Loop `var` over [0, total) by `step` (emit(step)), then one remainder block (emit(rest))."""
    full, rest = total - total % step, total % step
    out = []
    if full:
        out.append(f"for (int64_t {var} = 0; {var} < {full}; {var} += {step}) {{")
        out += ["  " + line for line in emit(step)]
        out.append("}")
    if rest:
        out.append(f"{{ const int64_t {var} = {full};")
        out += ["  " + line for line in emit(rest)]
        out.append("}")
    return out


@emits("Conv")
def emit_conv(node: ir.Node, ctx: EmitContext) -> str:  # noqa: C901
    x, w_name, y = node.inputs[0], node.inputs[1], node.outputs[0]
    b_name = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] else None
    xv = ctx.value(x)
    if not xv.batched:
        raise unsupported(node, "the input X must be an activation (batched) tensor")
    if ctx.value(w_name).batched:
        raise unsupported(node, "the weights W must be a constant (initializer), not a computed tensor")
    if b_name is not None and ctx.value(b_name).batched:
        raise unsupported(node, "the bias B must be a constant (initializer), not a computed tensor")
    weight = np.asarray(ctx.const_value(w_name), np.float32)
    rank = len(xv.shape) - 1
    if rank not in (1, 2):
        raise unsupported(node, f"only 1-D and 2-D convolutions are supported; input shape {xv.full_shape} is {rank}-D")
    if weight.ndim != rank + 2:
        raise unsupported(node, f"weights of shape {weight.shape} do not match a {rank}-D convolution")
    channels, group = xv.shape[0], int(node.attr("group", 1))
    m_out = weight.shape[0]
    if group < 1 or channels % group or m_out % group or weight.shape[1] != channels // group:
        raise unsupported(node, f"group={group} does not fit {channels} input channels and weights {weight.shape}")
    kernel = list(weight.shape[2:])
    if node.attr("kernel_shape") is not None and list(node.attr("kernel_shape")) != kernel:
        raise unsupported(node, f"kernel_shape {node.attr('kernel_shape')} differs from the weights' {kernel}")
    strides, dilations = spatial_attrs(node, rank, kernel)
    begin, end, outs = window_geometry(node, list(xv.shape[1:]), kernel, strides, dilations)
    check_output_shape(node, ctx, y, m_out, outs)
    bias = None
    if b_name is not None:
        bias = np.asarray(ctx.const_value(b_name), np.float32).reshape(-1)
        if bias.shape != (m_out,):
            raise unsupported(node, f"bias of shape {bias.shape} for {m_out} output channels")
    act = _activation(node)

    if rank == 1:  # as 2-D with a height of 1
        h, w, kh, kw = 1, xv.shape[1], 1, kernel[0]
        sh, sw, dh, dw = 1, strides[0], 1, dilations[0]
        pt, pl, pb, pr, oh, ow = 0, begin[0], 0, end[0], 1, outs[0]
        weight = weight.reshape(m_out, -1, 1, kw)
    else:
        (h, w), (kh, kw), (sh, sw), (dh, dw) = xv.shape[1:], kernel, strides, dilations
        (pt, pl), (pb, pr), (oh, ow) = begin, end, outs
    cg, mg = channels // group, m_out // group
    k_total = cg * kh * kw

    # Padded input with columns split by phase: channel c, phase f, padded row i, padded column
    # p*sw + f sit at c*plane + f*hp*wq + i*wq + p. Tap (r, s) of the output at (i, q) reads
    # xp[c*plane + (i*sh + r*dh)*wq + q + taps[s]].
    hp, wp = h + pt + pb, w + pl + pr
    wq = -(-wp // sw)
    plane = sw * hp * wq
    taps = [((s * dw) % sw) * hp * wq + (s * dw) // sw for s in range(kw)]
    extract = m_out * oh * ow  # outputs written once, from a buffer (spatial) or lane by lane (channel)

    # Cost (cycles per sample, rough) of each strategy; see _cover.
    isa = ctx.isa
    lanes = isa.lanes
    flat_vectors = -(-((oh - 1) * wq + ow) // lanes)
    row_vectors = -(-ow // lanes)
    plans = []
    if sh == 1:
        a, b, cost = _cover(mg, flat_vectors, k_total, unaligned_load(isa), isa)
        plans.append((group * cost + extract * 0.5, "flat", a, b, flat_vectors))
    a, b, cost = _cover(mg, row_vectors, k_total, unaligned_load(isa), isa)
    plans.append((group * oh * cost + extract * 0.5, "rows", a, b, row_vectors))
    m_vectors = -(-mg // lanes)
    a, b, cost = _cover(oh * ow, m_vectors, k_total, 1.0, isa)
    plans.append((group * cost + extract * 1.5, "channel", a, b, m_vectors))

    def padded_floats(mode: str, vectors: int) -> int:
        """The padded copy, plus the slack the last spatial vectors read past the last channel."""
        if mode == "channel":
            return channels * plane
        last_row = 0 if mode == "flat" else (oh - 1) * sh * wq
        reach = (channels - 1) * plane + max(taps) + (kh - 1) * dh * wq + last_row + vectors * lanes
        return -(-max(channels * plane, reach) // 16) * 16

    def scratch(plan: tuple) -> int:  # padded input + the spatial blocks' output buffer
        _, mode, a, _, vectors = plan
        return padded_floats(mode, vectors) + (0 if mode == "channel" else a * vectors * lanes)

    fitting = [plan for plan in plans if scratch(plan) <= SCRATCH_LIMIT_FLOATS]
    if not fitting:
        wt = ctx.const_array(weight.reshape(m_out, -1), f"{node.name}_W")
        bt = ctx.const_array(bias, f"{node.name}_B") if bias is not None else None
        return _direct(ctx, x, y, wt, bt, dict(c=channels, h=h, w=w, m=m_out, g=group, kh=kh, kw=kw, sh=sh, sw=sw,
                                               dh=dh, dw=dw, pt=pt, pl=pl, oh=oh, ow=ow), act)
    _, mode, a, b, vectors = min(fitting, key=lambda plan: plan[0])
    xp_floats = padded_floats(mode, vectors)

    blocking = f"{a} positions x {b * lanes} channels" if mode == "channel" else f"{a} channels x {b * lanes} positions"
    lines = [f"// strategy: {mode}, register blocks of {blocking}",
             f"const float* x = {ctx.ptr(x)};", f"float* y = {ctx.ptr(y)};",
             f"alignas(64) float xp[{xp_floats}];",
             "std::memset(xp, 0, sizeof xp);  // padding stays zero; the input positions are rewritten per sample"]
    if mode != "channel":
        lines.append(f"alignas(64) float ext[{a * vectors * lanes}];")
    lines += ["for (int64_t n = 0; n < nb; ++n) {",
              f"  const float* xn = x + n * {channels * h * w};",
              f"  float* yn = y + n * {m_out * oh * ow};",
              f"  for (int64_t c = 0; c < {channels}; ++c)",
              f"    for (int64_t i = 0; i < {h}; ++i) {{",
              f"      const float* src = xn + (c * {h} + i) * {w};",
              f"      float* dst = xp + c * {plane} + (i + {pt}) * {wq};"]
    for phase in range(sw):
        first = (phase - pl) % sw
        count = len(range(first, w, sw))
        if count:
            q0 = (first + pl) // sw
            lines.append(f"      for (int64_t k = 0; k < {count}; ++k) "
                         f"dst[{phase * hp * wq + q0} + k] = src[{first} + k * {sw}];")
    lines.append("    }")
    shape = dict(cg=cg, mg=mg, kh=kh, kw=kw, dh=dh, sh=sh, wq=wq, oh=oh, ow=ow, plane=plane, taps=taps)
    if mode == "channel":
        body = _channel_blocks(ctx, node, weight, bias, group, shape, a, b, act)
    else:
        body = _spatial_blocks(ctx, node, weight, bias, group, shape, a, b, vectors, mode == "flat", act)
    lines += ["  " + line for line in body]
    lines.append("}")
    return "\n".join(lines)


def _spatial_blocks(ctx: EmitContext, node: ir.Node, weight: np.ndarray, bias: np.ndarray | None, group: int, g: dict[str, int],  # noqa: C901
                    mb: int, v: int, vectors: int, flat: bool, act: str) -> list[str]:
    """MB output channels x V vectors of neighbouring outputs (a flat row, or one output row)."""
    cg, mg, kh, kw, dh, sh, wq, oh, ow = (g[k] for k in ("cg", "mg", "kh", "kw", "dh", "sh", "wq", "oh", "ow"))
    plane, taps = g["plane"], g["taps"]
    k_total = cg * kh * kw
    t, load, lanes = ctx.isa.vector_type, ctx.isa.load, ctx.isa.lanes
    ext_stride = vectors * lanes
    sizes = [(m0, min(mb, mg - m0)) for m0 in range(0, mg, mb)]
    parts = [weight[gi * mg + m0: gi * mg + m0 + size].transpose(1, 2, 3, 0).reshape(-1)
             for gi in range(group) for m0, size in sizes]
    wr = ctx.const_array(np.concatenate(parts), f"{node.name}_W")  # channels m..m+MB: (ci, kh, kw, MB) at m*Cg*KH*KW
    bt = ctx.const_array(bias, f"{node.name}_B") if bias is not None else None

    def block(mbs: int, vs: int) -> list[str]:
        out = []
        for i in range(mbs):
            init = f"{t}{{}} + {bt}[m + {i}]" if bt else f"{t}{{}}"
            out.append(f"{t} " + ", ".join(f"a{i}_{j} = {init}" for j in range(vs)) + ";")
        out.append("const float* wk = wb;")
        out.append(f"for (int64_t ci = 0; ci < {cg}; ++ci) {{")
        out.append(f"  const float* xc = xg + ci * {plane} + base + j0;")
        out.append(f"  for (int64_t r = 0; r < {kh}; ++r, wk += {kw * mbs}) {{")
        out.append(f"    const float* xr = xc + r * {dh * wq};")
        for s in range(kw):
            loads = ", ".join(f"x{j} = {load}(xr + {taps[s] + j * lanes})" for j in range(vs))
            out.append(f"    {{ const {t} {loads};")
            for i in range(mbs):
                fmas = " ".join(f"a{i}_{j} += w * x{j};" for j in range(vs))
                out.append(f"      {{ const float w = wk[{s * mbs + i}]; {fmas} }}")
            out.append("    }")
        out.append("  }")
        out.append("}")
        for i in range(mbs):
            for j in range(vs):
                out.append(f"std::memcpy(ext + {i * ext_stride + j * lanes} + j0, &a{i}_{j}, sizeof({t}));")
        return out

    def channels_block(mbs: int) -> list[str]:
        out = [f"const int64_t m = g * {mg} + m0;", f"const float* wb = {wr} + m * {k_total};"]
        out += _split(vectors * lanes, v * lanes, "j0", lambda step: block(mbs, step // lanes))
        out.append(f"for (int64_t k = 0; k < {mbs}; ++k) {{")
        out.append(f"  const float* e = ext + k * {ext_stride};")
        if flat:
            out.append(f"  float* ym = yn + (m + k) * {oh * ow};")
            out.append(f"  for (int64_t i = 0; i < {oh}; ++i)")
            out.append(f"    for (int64_t q = 0; q < {ow}; ++q) {{ const float v = e[i * {wq} + q]; ym[i * {ow} + q] = {act}; }}")
        else:
            out.append(f"  float* ym = yn + (m + k) * {oh * ow} + row * {ow};")
            out.append(f"  for (int64_t q = 0; q < {ow}; ++q) {{ const float v = e[q]; ym[q] = {act}; }}")
        out.append("}")
        return out

    body = [f"for (int64_t g = 0; g < {group}; ++g) {{", f"  const float* xg = xp + g * {cg * plane};"]
    body += ["  " + line for line in _split(mg, mb, "m0", channels_block)]
    body.append("}")
    if flat:
        return ["const int64_t base = 0;", *body]
    return [f"for (int64_t row = 0; row < {oh}; ++row) {{", f"  const int64_t base = row * {sh * wq};",
            *["  " + line for line in body], "}"]


def _channel_blocks(ctx: EmitContext, node: ir.Node, weight: np.ndarray, bias: np.ndarray | None, group: int, g: dict[str, int],
                    pb: int, v: int, act: str) -> list[str]:
    """P output positions x V vectors of output channels (channels padded to whole vectors)."""
    cg, mg, kh, kw, dh, sh, wq, oh, ow = (g[k] for k in ("cg", "mg", "kh", "kw", "dh", "sh", "wq", "oh", "ow"))
    plane, taps = g["plane"], g["taps"]
    k_total = cg * kh * kw
    t, load, lanes = ctx.isa.vector_type, ctx.isa.load, ctx.isa.lanes
    padded = -(-mg // lanes) * lanes
    wide = np.zeros((group, k_total, padded), np.float32)  # per group: (ci, kh, kw) x output channel
    wide[:, :, :mg] = weight.reshape(group, mg, k_total).transpose(0, 2, 1)
    wt = ctx.const_array(wide, f"{node.name}_W")
    bt = None
    if bias is not None:
        wide_bias = np.zeros((group, padded), np.float32)
        wide_bias[:, :mg] = bias.reshape(group, mg)
        bt = ctx.const_array(wide_bias, f"{node.name}_B")
    pixels = oh * ow

    def block(ps: int, vs: int) -> list[str]:
        out = []
        for i in range(ps):
            out.append(f"const int64_t b{i} = ((p0 + {i}) / {ow}) * {sh * wq} + (p0 + {i}) % {ow};")
        for j in range(vs):
            init = f"{load}({bt} + g * {padded} + c0 + {j * lanes})" if bt else f"{t}{{}}"
            out.append(f"const {t} bias{j} = {init};")
        for i in range(ps):
            out.append(f"{t} " + ", ".join(f"a{i}_{j} = bias{j}" for j in range(vs)) + ";")
        out.append(f"const float* wk = {wt} + g * {k_total * padded} + c0;")
        out.append(f"for (int64_t ci = 0; ci < {cg}; ++ci) {{")
        out.append(f"  const float* xc = xg + ci * {plane};")
        out.append(f"  for (int64_t r = 0; r < {kh}; ++r, wk += {kw * padded}) {{")
        out.append(f"    const float* xr = xc + r * {dh * wq};")
        for s in range(kw):
            loads = ", ".join(f"w{j} = {load}(wk + {s * padded + j * lanes})" for j in range(vs))
            out.append(f"    {{ const {t} {loads};")
            for i in range(ps):
                fmas = " ".join(f"a{i}_{j} += v * w{j};" for j in range(vs))
                out.append(f"      {{ const float v = xr[b{i} + {taps[s]}]; {fmas} }}")
            out.append("    }")
        out.append("  }")
        out.append("}")
        out.append(f"alignas(64) float lane[{lanes}];")
        for j in range(vs):
            out.append(f"{{ const int64_t valid = std::min<int64_t>({lanes}, {mg} - (c0 + {j * lanes}));")
            out.append(f"  float* yc = yn + (g * {mg} + c0 + {j * lanes}) * {pixels} + p0;")
            for i in range(ps):
                out.append(f"  std::memcpy(lane, &a{i}_{j}, sizeof lane);")
                out.append(f"  for (int64_t l = 0; l < valid; ++l) "
                           f"{{ const float v = lane[l]; yc[l * {pixels} + {i}] = {act}; }}")
            out.append("}")
        return out

    body = [f"for (int64_t g = 0; g < {group}; ++g) {{", f"  const float* xg = xp + g * {cg * plane};"]
    inner = _split(padded, v * lanes, "c0", lambda step: _split(pixels, pb, "p0", lambda ps: block(ps, step // lanes)))
    body += ["  " + line for line in inner]
    body.append("}")
    return body


def _range(out: int, size: int, stride: int, dilation: int, pad: int, tap: int) -> tuple[int, int]:
    """Outputs o in [lo, hi) whose tap `tap` reads inside the input: 0 <= o*stride - pad + tap*dilation < size."""
    shift = tap * dilation - pad
    lo = max(0, -(shift // stride))  # ceil(-shift / stride)
    hi = min(out, (size - 1 - shift) // stride + 1) if size - 1 - shift >= 0 else 0
    return lo, max(lo, hi)


def _direct(ctx: EmitContext, x: str, y: str, wt: str, bt: str | None, g: dict[str, int], act: str) -> str:
    c, h, w, m, groups = g["c"], g["h"], g["w"], g["m"], g["g"]
    kh, kw, sh, sw, dh, dw = g["kh"], g["kw"], g["sh"], g["sw"], g["dh"], g["dw"]
    pt, pl, oh, ow = g["pt"], g["pl"], g["oh"], g["ow"]
    cg, mg, taps = c // groups, m // groups, kh * kw
    rows = [_range(oh, h, sh, dh, pt, r) for r in range(kh)]
    cols = [_range(ow, w, sw, dw, pl, s) for s in range(kw)]
    table = lambda values: ", ".join(str(v) for v in values)  # noqa: E731
    init = f"{bt}[m]" if bt else "0.0f"
    finish = "" if act == "v" else f"for (int64_t j = 0; j < {oh * ow}; ++j) {{ const float v = ym[j]; ym[j] = {act}; }}"
    return f"""
// strategy: direct (input too large for a padded copy on the stack)
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
static const int32_t row_lo[{kh}] = {{{table(r[0] for r in rows)}}}, row_hi[{kh}] = {{{table(r[1] for r in rows)}}};
static const int32_t col_lo[{kw}] = {{{table(s[0] for s in cols)}}}, col_hi[{kw}] = {{{table(s[1] for s in cols)}}};
for (int64_t n = 0; n < nb; ++n) {{
  const float* xn = x + n * {c * h * w};
  float* yn = y + n * {m * oh * ow};
  for (int64_t m = 0; m < {m}; ++m) {{
    float* __restrict ym = yn + m * {oh * ow};
    for (int64_t j = 0; j < {oh * ow}; ++j) ym[j] = {init};
    const float* xg = xn + (m / {mg}) * {cg * h * w};
    for (int64_t ci = 0; ci < {cg}; ++ci) {{
      const float* __restrict xc = xg + ci * {h * w};
      const float* wk = {wt} + (m * {cg} + ci) * {taps};
      for (int64_t r = 0; r < {kh}; ++r) {{
        for (int64_t s = 0; s < {kw}; ++s) {{
          const float wv = wk[r * {kw} + s];
          const int64_t lo = col_lo[s], hi = col_hi[s];
          for (int64_t i = row_lo[r]; i < row_hi[r]; ++i) {{
            const int64_t base = (i * {sh} - {pt} + r * {dh}) * {w} - {pl} + s * {dw};
            float* __restrict yr = ym + i * {ow};
            for (int64_t q = lo; q < hi; ++q) yr[q] += wv * xc[base + q * {sw}];
          }}
        }}
      }}
    }}
    {finish}
  }}
}}"""
