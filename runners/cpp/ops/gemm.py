"""Gemm and MatMul with a constant right-hand side: y = x W + b.

A MatMul whose right operand is an activation, or a constant that is not a matrix (or vector), is
numpy's batched matmul and goes to ops/matmul.py; this kernel stays for weight matrices.

Weights are stored transposed to (K, N) so the inner loop is an axpy over the N outputs: it
vectorizes without -ffast-math (no floating-point reduction to reorder), and a tile of samples
reuses W from L1. alpha and beta are folded into W and b at generation time.
"""

from __future__ import annotations

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import emits, unsupported
from yukti.runners.cpp.ops.matmul import emit_batched_matmul


LANES = 8  # floats per vector (AVX2); GCC/Clang split it on narrower ISAs, so the code stays portable
BLOCK_VECTORS = 4  # accumulators per register block for one row
ROWS = 2  # rows sharing each weight load in the batched kernel (ROWS x BLOCK_VECTORS accumulators)


def _activation(node: ir.Node, vector: bool = False) -> str:
    """Expression on `v` (a float, or a vf8 when `vector`) for an activation fused into this node by
    codegen.fuse_activations. NaN stays NaN, as in ONNX."""
    relu = "v < vf8{} ? vf8{} : v" if vector else "v < 0.0f ? 0.0f : v"
    return {"": "v", "Relu": relu}[node.attr("fused_activation", "")]


MAX_ACCUMULATORS = 12  # of the 16 vector registers; the rest hold weights and broadcasts


def _block(n_vectors: int, rows: int, k: int, n_padded: int, start: int, n: int, w: str, b: str | None, act: str,
           vector_act: str) -> str:
    """C++ for `rows` rows x `n_vectors` vectors of outputs starting at column `start`.

    Accumulators are named vector variables, so they live in registers across the k loop. With
    few of them (batch 1), the k loop is split into independent chains summed at the end: each
    FMA would otherwise wait for the previous one (latency-bound rather than throughput-bound).
    """
    chains = max(1, min(4, MAX_ACCUMULATORS // (rows * n_vectors), k))
    lines = []
    for r in range(rows):
        for v in range(n_vectors):
            for c in range(chains):
                init = f"load8({b} + {start + v * LANES})" if b and c == 0 else "vf8{}"
                lines.append(f"vf8 acc{r}_{v}_{c} = {init};")

    def step(k_expr: str, chain: int) -> list[str]:
        out = [f"  {{ const float* wk = {w} + ({k_expr}) * {n_padded} + {start};"]
        for v in range(n_vectors):
            out.append(f"    const vf8 w{v} = load8(wk + {v * LANES});")
        for r in range(rows):
            out.append(f"    const float x{r} = xr[{r} * {k} + ({k_expr})];")
            for v in range(n_vectors):
                out.append(f"    acc{r}_{v}_{chain} += x{r} * w{v};")
        out.append("  }")
        return out

    main = k - k % chains
    lines.append(f"for (int64_t k = 0; k < {main}; k += {chains}) {{")
    for c in range(chains):
        lines.extend(step(f"k + {c}", c))
    lines.append("}")
    for extra in range(main, k):
        lines.extend(step(str(extra), 0))
    for r in range(rows):
        for v in range(n_vectors):
            total = " + ".join(f"acc{r}_{v}_{c}" for c in range(chains))
            column = start + v * LANES
            valid = min(LANES, n - column)
            if valid == LANES:  # a whole vector: activation and store as vector operations
                lines.append(f"{{ const vf8 v = {total}; const vf8 out = {vector_act}; std::memcpy(yr + {r} * {n} + {column}, &out, sizeof out); }}")
            else:
                lines.append(f"{{ const vf8 sum = {total}; alignas(32) float lane[{LANES}]; std::memcpy(lane, &sum, sizeof lane);")
                lines.append(f"  for (int64_t j = 0; j < {valid}; ++j) {{ const float v = lane[j]; yr[{r} * {n} + {column} + j] = {act}; }} }}")
    return "\n".join(lines)


def _dense(ctx: EmitContext, node: ir.Node, x: str, y: str, weight: np.ndarray, bias: np.ndarray | None, rows: int) -> str:
    k, n = weight.shape
    n_vectors = -(-n // LANES)
    n_padded = n_vectors * LANES
    padded = np.zeros((k, n_padded), np.float32)  # zero columns up to whole vectors: no masked loads
    padded[:, :n] = weight
    w = ctx.const_array(padded, f"{node.name}_W")
    b = None
    if bias is not None:
        b = ctx.const_array(np.pad(bias.astype(np.float32), (0, n_padded - n)), f"{node.name}_b")
    act, vector_act = _activation(node), _activation(node, vector=True)

    def row_block(n_rows: int) -> str:
        parts = []
        for first in range(0, n_vectors, BLOCK_VECTORS):
            count = min(BLOCK_VECTORS, n_vectors - first)
            parts.append("{\n" + _block(count, n_rows, k, n_padded, first * LANES, n, w, b, act, vector_act) + "\n}")
        return "\n".join(parts)

    return f"""
const float* x = {ctx.ptr(x)};
float* y = {ctx.ptr(y)};
const int64_t total_rows = nb * {rows};
int64_t r = 0;
for (; r + {ROWS} <= total_rows; r += {ROWS}) {{
  const float* xr = x + r * {k};
  float* yr = y + r * {n};
{_indent(row_block(ROWS), 2)}
}}
for (; r < total_rows; ++r) {{
  const float* xr = x + r * {k};
  float* yr = y + r * {n};
{_indent(row_block(1), 2)}
}}"""


def _indent(text: str, n: int) -> str:
    return "\n".join(" " * n + line for line in text.splitlines())


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


@emits("MatMul")
def emit_matmul(node: ir.Node, ctx: EmitContext) -> str:
    a, b = node.inputs
    shape = ctx.value(a).shape
    if not ctx.value(a).batched or ctx.value(b).batched or ctx.value(b).const.ndim not in (1, 2) or not shape:
        return emit_batched_matmul(node, ctx)  # numpy's batched matmul (two activations, stacks of matrices)
    weight = np.asarray(ctx.const_value(b), np.float32)
    if weight.ndim == 1:  # x @ v: one output column, dropped from the shape (which the IR already did)
        weight = weight.reshape(-1, 1)
    rows = int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1
    return _dense(ctx, node, a, node.outputs[0], weight, None, rows=rows)
