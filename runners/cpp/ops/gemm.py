"""Gemm and MatMul with a constant right-hand side: y = x W + b.

A MatMul whose right operand is an activation, or a constant that is not a matrix (or vector), is
numpy's batched matmul and goes to ops/matmul.py; this kernel stays for weight matrices.

The kernel is an outer product per k: `rows` samples x `vectors` output vectors of accumulators
(named vector variables, so they live in registers), each k step loading the block's weight vectors
once and broadcasting one input per row. That vectorizes without -ffast-math (no floating-point
reduction to reorder) and every output sums its k terms in order (except the split-K chains below).

The blocking comes from the target (runners/cpp/isa.py) and the layer's shape:
* the vector width is the ISA's (`vfN`, N = lanes); output columns are padded with zero weights up
  to whole vectors, so no load is masked and only the last store of a row may be partial;
* the output vectors are cut into balanced panels of at most panel_vectors(isa) (the squarest
  register block: 3 vectors x 3 rows on 16 registers, 5 x 5 on 32), and the weights are prepacked
  panel by panel, each a K x (panel width) block, in the order the k loop reads them (contiguous);
  a panel passes over every row of the tile before the next starts, so its weights stay in L1;
* large batches: each panel runs `rows` samples per weight load, as many as the registers hold
  (rows x vectors accumulators + the weight vectors + a broadcast); leftover rows go through blocks
  of ..., 4, 2 and 1 rows;
* one row (batch 1): split-K chains, summed pairwise at the end (one chain would wait for each FMA's
  result: latency-bound; several keep both FMA pipes busy), in blocks wider than a panel (their
  weights stream from memory, only the accumulators take registers), so a broadcast serves more.
alpha and beta are folded into W and b at generation time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.isa import Isa
from yukti.runners.cpp.ops import emits, pairwise_sum, unsupported
from yukti.runners.cpp.ops.matmul import emit_batched_matmul
from yukti.runners.cpp.ops.softmax import register_softmax, softmax_rows

MAX_ROWS = 12  # rows of one register block (longer blocks add code, not speed: FMA-bound from about 6)
IN_FLIGHT = 16  # independent accumulators a block wants: 2 FMA pipes x 4 cycles of latency, with slack
# ... and a one-row block (batch 1): each FMA there also loads its weights, so loads (2 a cycle) pace
# it below an FMA a cycle, and 8 chains in flight cover the latency; more would only deepen the sum
# that ends the layer, which the next layer waits for.
IN_FLIGHT_ONE_ROW = 8
MAX_CHAINS = 8  # split-K chains of one output (more only adds the partial sums' additions)
SPARE_REGISTERS = 2  # the broadcast input and one temporary


@dataclass(frozen=True)
class Panel:
    """Output vectors [first, first + vectors) of a layer, their weights at `offset` floats into the
    packed array (row k of the panel at offset + k * vectors * lanes), and the rows of its main block."""

    first: int
    vectors: int
    offset: int
    rows: int


def rows_for(vectors: int, isa: Isa) -> int:
    """Rows of a block of `vectors` output vectors: its accumulators, its weight vectors and the
    spare registers within the ISA's register file."""
    return max(1, min(MAX_ROWS, (isa.vector_registers - SPARE_REGISTERS - vectors) // vectors))


def panel_vectors(isa: Isa) -> int:
    """The widest panel worth its registers: a block of V vectors x R rows does R*V FMAs per k for
    V + R loads (weights and broadcasts), so the squarest block that fits wins (ties: the wider):
    3 vectors x 3 rows on 16 registers (AVX2), 5 x 5 on 32 (AVX-512, NEON)."""
    def fmas_per_load(v: int) -> float:
        r = rows_for(v, isa)
        return r * v / (r + v)

    return max(range(1, 9), key=lambda v: (round(fmas_per_load(v), 6), v))


def one_row_vectors(isa: Isa) -> int:
    """Output vectors of a one-row block (batch 1): its weights stream from memory, so only the
    accumulators (several chains each) take registers; wider blocks share each broadcast more."""
    return max(1, isa.vector_registers // 4)


def chains_for(rows: int, vectors: int, k: int, isa: Isa) -> int:
    """Independent k chains per accumulator, enough to keep IN_FLIGHT FMAs going when the block is
    small (batch 1), within the registers (a one-row block reads its weights straight from memory)."""
    accumulators = rows * vectors
    room = (isa.vector_registers - SPARE_REGISTERS - (0 if rows == 1 else vectors)) // accumulators
    wanted = IN_FLIGHT_ONE_ROW if rows == 1 else IN_FLIGHT
    return max(1, min(MAX_CHAINS, -(-wanted // accumulators), room, k))


def panels(k: int, n: int, isa: Isa) -> list[Panel]:
    """The layer's output vectors cut into balanced panels of at most panel_vectors(isa)."""
    n_vectors = -(-n // isa.lanes)
    count = -(-n_vectors // panel_vectors(isa))
    base, extra = divmod(n_vectors, count)
    out, first = [], 0
    for i in range(count):
        vectors = base + (i < extra)
        out.append(Panel(first, vectors, first * isa.lanes * k, rows_for(vectors, isa)))
        first += vectors
    return out


def _activation(node: ir.Node, vector_type: str | None = None) -> str:
    """Expression on `v` (a float, or a `vector_type` vector) for an activation fused into this node
    by codegen.fuse_activations. NaN stays NaN, as in ONNX."""
    zero = f"{vector_type}{{}}" if vector_type else "0.0f"
    return {"": "v", "Relu": f"v < {zero} ? {zero} : v"}[node.attr("fused_activation", "")]


def _block(isa: Isa, rows: int, vectors: list[tuple[int, int, int]], k: int, n: int, w: str, b: str | None,
           vector_act: str, softmax: bool = False) -> str:
    """C++ for `rows` rows (from xr, yr) x the output `vectors`, each (output column, offset of its
    weights at k = 0 in `w`, stride of its panel's rows). `softmax`: the vectors are whole rows, and
    each row's softmax is taken in registers (a Softmax fused into this node)."""
    t, load, lanes = isa.vector_type, isa.load, isa.lanes
    chains = chains_for(rows, len(vectors), k, isa)
    lines = [f"const float* wv{v} = {w} + {offset};" for v, (_, offset, _) in enumerate(vectors)]
    for v, (column, _, _) in enumerate(vectors):
        for c in range(chains):
            init = f"{load}({b} + {column})" if b and c == 0 else f"{t}{{}}"
            lines.append(f"{t} " + ", ".join(f"acc{r}_{v}_{c} = {init}" for r in range(rows)) + ";")

    def step(k_expr: str, chain: int) -> list[str]:
        loads = ", ".join(f"w{v} = {load}(wv{v} + ({k_expr}) * {stride})" for v, (_, _, stride) in enumerate(vectors))
        out = [f"  {{ const {t} {loads};"]
        for r in range(rows):
            fmas = " ".join(f"acc{r}_{v}_{chain} += xb * w{v};" for v in range(len(vectors)))
            out.append(f"    {{ const float xb = xr[{r * k} + ({k_expr})]; {fmas} }}")
        out.append("  }")
        return out

    main = k - k % chains
    if main:
        lines.append(f"for (int64_t k = 0; k < {main}; k += {chains}) {{")
        for c in range(chains):
            lines.extend(step(f"k + {c}", c))
        lines.append("}")
    for extra in range(main, k):  # the last k % chains steps, one per chain
        lines.extend(step(str(extra), extra - main))
    for r in range(rows):
        if softmax:
            # codegen fuses a Softmax only into a layer without an activation
            logits = [pairwise_sum([f"acc{r}_{v}_{c}" for c in range(chains)]) for v in range(len(vectors))]
            epilogue = register_softmax(isa, logits, [column for column, _, _ in vectors], n, f"yr + {r * n}")
            lines.append("{\n" + _indent("\n".join(epilogue), 2) + "\n}")
            continue
        for v, (column, _, _) in enumerate(vectors):
            total = pairwise_sum([f"acc{r}_{v}_{c}" for c in range(chains)])
            valid = min(lanes, n - column)
            size = "sizeof out" if valid == lanes else f"{valid} * sizeof(float)"  # the row's last, partial vector
            lines.append(f"{{ const {t} v = {total}; const {t} out = {vector_act}; std::memcpy(yr + {r * n + column}, &out, {size}); }}")
    return "\n".join(lines)


def _remainders(rows: int) -> list[int]:
    """Block heights that finish any count of leftover rows below `rows`: ..., 4, 2, 1 (binary)."""
    sizes, size = [], 1
    while size < rows:
        sizes.append(size)
        size *= 2
    return sizes[::-1]


def _rows_loop(isa: Isa, block_rows: int, vectors: list[tuple[int, int, int]], k: int, n: int, w: str, b: str | None,
               vector_act: str) -> list[str]:
    """All rows through blocks of `block_rows`, then the leftover through smaller blocks."""
    def block(size: int, head: str, tail: str = "") -> list[str]:
        return [head, f"  const float* xr = x + r * {k};", f"  float* yr = y + r * {n};",
                _indent(_block(isa, size, vectors, k, n, w, b, vector_act), 2), *([tail] if tail else []), "}"]

    lines = ["int64_t r = 0;"]
    if block_rows == 1:
        return lines + block(1, "for (; r < total_rows; ++r) {")
    lines += block(block_rows, f"for (; r + {block_rows} <= total_rows; r += {block_rows}) {{")
    for size in _remainders(block_rows):
        lines += block(size, f"if (r + {size} <= total_rows) {{", f"  r += {size};")
    return lines


def _dense(ctx: EmitContext, node: ir.Node, x: str, y: str, weight: np.ndarray, bias: np.ndarray | None, rows: int) -> str:
    """y = x W + b (+ the fused activation) over `rows` rows per sample; with a Softmax fused into the
    node (codegen.fuse_activations), the softmax of each row: in registers where one block holds
    whole rows, else by a pass over the rows once they are stored."""
    k, n = weight.shape
    softmax = bool(node.attr("fused_softmax", 0))
    isa, lanes = ctx.isa, ctx.isa.lanes
    cut = panels(k, n, isa)
    n_padded = sum(p.vectors for p in cut) * lanes
    padded = np.zeros((k, n_padded), np.float32)  # zero columns up to whole vectors: no masked loads
    padded[:, :n] = weight
    # each panel K x (its width), contiguous: the order its k loop reads the weights
    packed = [padded[:, p.first * lanes:(p.first + p.vectors) * lanes].reshape(-1) for p in cut]
    w = ctx.const_array(np.concatenate(packed), f"{node.name}_W")
    b = None
    if bias is not None:
        b = ctx.const_array(np.pad(bias.astype(np.float32), (0, n_padded - n)), f"{node.name}_b")
    vector_act = _activation(node, isa.vector_type)

    def columns(panel: Panel) -> list[tuple[int, int, int]]:
        stride = panel.vectors * lanes
        return [((panel.first + v) * lanes, panel.offset + v * lanes, stride) for v in range(panel.vectors)]

    body = []
    for panel in cut:  # panel by panel: its weights stay in L1 while every row of the tile passes
        last = min((panel.first + panel.vectors) * lanes, n) - 1
        lines = [f"// columns {panel.first * lanes}..{last}: {panel.rows} rows x {panel.vectors} vectors per block"]
        lines += _rows_loop(isa, panel.rows, columns(panel), k, n, w, b, vector_act)
        body.append("{\n" + _indent("\n".join(lines), 2) + "\n}")
    if softmax:  # many rows: one pass once all are stored, its exps whole vectors even when a row is short
        body.append("{\n" + _indent(softmax_rows(ctx.ptr(y), ctx.ptr(y), rows, n).strip("\n"), 2) + "\n}")
    head = [f"const float* x = {ctx.ptr(x)};", f"float* y = {ctx.ptr(y)};", f"const int64_t total_rows = nb * {rows};"]
    if len(cut) == 1 and not softmax:
        return "\n".join(head + body)
    # One row (batch 1): across the panels, wider blocks than a panel's, so each broadcast serves
    # more; a fused softmax taken in registers when one block holds the row.
    every = [column for panel in cut for column in columns(panel)]
    group = one_row_vectors(isa)
    single = ["const float* xr = x;", "float* yr = y;"]
    for first in range(0, len(every), group):
        single.append("{\n" + _indent(_block(isa, 1, every[first:first + group], k, n, w, b, vector_act,
                                                softmax and len(every) <= group), 2) + "\n}")
    if softmax and len(every) > group:
        single.append("softmax_in_place(yr, " + str(n) + ");")
    return "\n".join(head + ["if (total_rows == 1) {", _indent("\n".join(single), 2), "} else {",
                              _indent("\n".join(body), 2), "}"])


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line if line else line for line in text.splitlines())


@emits("Gemm")
def emit_gemm(node: ir.Node, ctx: EmitContext) -> str:
    a, b = node.inputs[0], node.inputs[1]
    if node.attr("transA", 0):
        raise unsupported(node, "transA=1 would transpose the batch dimension")
    if ctx.value(b).batched:
        raise unsupported(node, "B must be a constant (a weight matrix)")
    weight = np.asarray(ctx.const_value(b), np.float32)
    if node.attr("transB", 0):
        weight = weight.T
    weight = (np.float32(node.attr("alpha", 1.0)) * weight).astype(np.float32)
    n = weight.shape[1]
    bias = None
    shape = ctx.value(a).shape
    # one row per sample, or k when the IR keeps a [batch*k, K] input as [batch, k, K] (ir._rows_node)
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    if len(node.inputs) > 2 and node.inputs[2]:
        if ctx.value(node.inputs[2]).batched:
            raise unsupported(node, "C must be a constant (a bias)")
        c = np.asarray(ctx.const_value(node.inputs[2]), np.float32)
        if c.ndim == 2 and c.shape[0] != 1:
            raise unsupported(node, f"C of shape {c.shape} varies over the batch")
        bias = (np.float32(node.attr("beta", 1.0)) * np.broadcast_to(c.reshape(-1) if c.ndim == 2 else c, (n,))).astype(np.float32)
    return _dense(ctx, node, a, node.outputs[0], weight, bias, rows=rows)


def dense_operands(a: ir.Value, b: ir.Value) -> bool:
    """Whether a MatMul of `a` by `b` is a dense layer for this kernel: a batched input times a
    constant matrix (or vector); anything else is numpy's batched matmul (ops/matmul.py)."""
    return a.batched and bool(a.shape) and not b.batched and b.const is not None and b.const.ndim in (1, 2)


@emits("MatMul")
def emit_matmul(node: ir.Node, ctx: EmitContext) -> str:
    a, b = node.inputs
    shape = ctx.value(a).shape
    if not dense_operands(ctx.value(a), ctx.value(b)):
        return emit_batched_matmul(node, ctx)  # numpy's batched matmul (two activations, stacks of matrices)
    weight = np.asarray(ctx.const_value(b), np.float32)
    if weight.ndim == 1:  # x @ v: one output column, dropped from the shape (which the IR already did)
        weight = weight.reshape(-1, 1)
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    return _dense(ctx, node, a, node.outputs[0], weight, None, rows=rows)
