"""IR -> C++ source: weights in `model.hpp`, the tiled `infer` in `model.cpp`.

The graph runs tile by tile (`kTile` samples at a time) so every intermediate lives in one arena
planned here, sized for a tile, on the stack of the calling thread: no heap allocation and no
mutable global state in `infer`, hence calls from several threads are safe. Each operator's code
comes from its emitter (runners/cpp/ops/), a pure function of the node and the shapes.

Names: the IR's names are derived identifiers already (ir.from_onnx sanitizes the model), and the
text of a comment passes `safe_comment` as well; the only human-readable names in the output are
the model's input and output names, as escaped string literals (`c_string_literal`).
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from yukti.runners.cpp import ir
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import ALIASING_OPS, EMITTERS, c_float
from yukti import limits
from yukti.errors import UnsupportedModelError
from yukti.model import Model
from yukti.safe_names import c_string_literal, is_identifier, safe_comment

ALIGN_FLOATS = 16  # 64 bytes
MAX_FLOAT_LITERAL_BYTES = 20  # "-0x1.fffffep+127f, ": the longest weight as text
ARENA_TARGET_FLOATS = 48 * 1024  # ~192 KiB per tile: stays within L2 on current CPUs
MAX_TILE = 64


def _roots(graph: ir.Graph) -> dict[str, str]:
    """Each batched value -> the value whose buffer it uses (aliasing ops share their input's)."""
    root = {name: name for name, v in graph.values.items() if v.batched}
    outputs = set(graph.outputs)
    for node in graph.nodes:
        if node.op in ALIASING_OPS and node.outputs[0] not in outputs:
            root[node.outputs[0]] = root[node.inputs[0]]
    return root


def plan_arena(graph: ir.Graph) -> tuple[dict[str, int], int]:
    """First-fit offsets (floats per sample) for intermediates, freed after their last use."""
    root = _roots(graph)
    external = set(graph.inputs) | set(graph.outputs)
    last_use: dict[str, int] = {}
    for index, node in enumerate(graph.nodes):
        for name in node.inputs:
            if name in root:
                last_use[root[name]] = index
    offsets: dict[str, int] = {}
    live: list[tuple[int, int, str]] = []  # (offset, size, root)
    peak = 0
    for index, node in enumerate(graph.nodes):
        for name in node.outputs:
            if not name or name in external or root.get(name) != name:
                continue
            size = -(-graph.values[name].size // ALIGN_FLOATS) * ALIGN_FLOATS
            offset = 0
            for start, length, _ in sorted(live):
                if offset + size <= start:
                    break
                offset = max(offset, start + length)
            offsets[name] = offset
            live.append((offset, size, name))
            peak = max(peak, offset + size)
        live = [entry for entry in live if last_use.get(entry[2], index) > index]
    return offsets, peak


def choose_tile(per_sample_floats: int) -> int:
    if per_sample_floats == 0:
        return MAX_TILE
    tile = max(1, min(MAX_TILE, ARENA_TARGET_FLOATS // per_sample_floats))
    return 1 << (tile.bit_length() - 1)  # a power of two


@dataclass(frozen=True)
class Source:
    header: str
    body: str
    tile: int
    arena_floats: int
    n_inputs: int
    n_outputs: int
    input_sizes: tuple[int, ...]
    output_sizes: tuple[int, ...]
    # per-sample output shapes as the IR inferred them (the model file may leave dims unnamed)
    output_shapes: tuple[tuple[int, ...], ...] = ()


FUSIBLE_PRODUCERS = {"Gemm", "MatMul", "Conv"}
FUSIBLE_ACTIVATIONS = {"Relu"}


def fuse_activations(graph: ir.Graph) -> ir.Graph:
    """Gemm/MatMul/Conv followed by Relu (its only consumer) becomes one node: one pass over memory
    less per layer. Returns a new Graph; the input graph is left as it was."""
    consumers: dict[str, int] = {}
    for node in graph.nodes:
        for name in node.inputs:
            consumers[name] = consumers.get(name, 0) + 1
    producer = {node.outputs[0]: node for node in graph.nodes if node.outputs}
    fused: list[ir.Node] = []
    absorbed: set[int] = set()
    replaced: dict[int, ir.Node] = {}
    for node in graph.nodes:
        source = producer.get(node.inputs[0]) if node.inputs else None
        if (node.op in FUSIBLE_ACTIVATIONS and source is not None and source.op in FUSIBLE_PRODUCERS
                and consumers.get(node.inputs[0]) == 1 and node.inputs[0] not in graph.outputs
                and not source.attr("fused_activation") and id(source) not in absorbed):
            merged = ir.Node(source.op, source.name, list(source.inputs), [node.outputs[0]],
                             {**source.attrs, "fused_activation": node.op})
            replaced[id(source)] = merged
            absorbed.add(id(node))
    for node in graph.nodes:
        if id(node) in absorbed:
            continue
        fused.append(replaced.get(id(node), node))
    return ir.Graph(graph.inputs, graph.outputs, graph.values, fused, graph.opset, graph.non_float_outputs)


def generate(graph: ir.Graph, *, prefix: str = "", fuse: bool = True,
             input_names: tuple[str, ...] | None = None, output_names: tuple[str, ...] | None = None) -> Source:
    """C++ for `graph`. `prefix` starts every exported symbol (an identifier, or ""); `input_names` and
    `output_names` (the model's own, any text) are written as escaped string literals only."""
    if prefix and not (is_identifier(prefix) or is_identifier(prefix.rstrip("_"))):
        raise ValueError(f"symbol prefix {prefix!r} must be a C identifier ([A-Za-z][A-Za-z0-9_]*)")
    if fuse:
        graph = fuse_activations(graph)
    offsets, per_sample = plan_arena(graph)
    tile = choose_tile(per_sample)
    root = _roots(graph)
    pointers: dict[str, str] = {}
    declarations: list[str] = []
    names = {}
    for i, name in enumerate(graph.inputs):
        names[name] = f"in{i}"
        declarations.append(f"  float* in{i} = const_cast<float*>(in[{i}]);  // {safe_comment(name)} (never written)")
    for i, name in enumerate(graph.outputs):
        names[name] = f"out{i}"
        declarations.append(f"  float* out{i} = out[{i}];  // {safe_comment(name)}")
    counter = 0
    for name, offset in offsets.items():
        names[name] = f"t{counter}"
        declarations.append(f"  float* t{counter} = arena + {offset * tile};  // {safe_comment(name)}")
        counter += 1
    for name, value in graph.values.items():
        if value.batched and root.get(name) in names:  # values fused away have no buffer
            pointers[name] = names[root[name]]

    ctx = EmitContext(graph, pointers)
    body: list[str] = []
    body_bytes = 0
    for node in graph.nodes:
        if node.op in ALIASING_OPS and node.outputs[0] not in graph.outputs:
            body.append(safe_comment(f"  // {node.op} {node.name}: {node.outputs[0]} aliases {node.inputs[0]}"))
            continue
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            op = "Identity" if node.op in ALIASING_OPS else node.op
            emitter = EMITTERS.get(op)
        if emitter is None:
            raise UnsupportedModelError(f"cpp: operator {node.op} (node {node.name}) is not supported")
        shapes = ", ".join(f"{graph.values[i].full_shape}" for i in node.inputs if i in graph.values)
        body.append(safe_comment(f"  // {node.op} {node.name}: ({shapes}) -> {[graph.values[o].full_shape for o in node.outputs if o]}"))
        code = emitter(node, ctx)
        body.append("  {\n" + _indent(code.strip("\n"), 4) + "\n  }")
        body_bytes += len(code)
        weight_bytes = ctx.constant_floats * MAX_FLOAT_LITERAL_BYTES
        if body_bytes + weight_bytes > limits.MAX_GENERATED_SOURCE_BYTES:
            raise UnsupportedModelError(
                f"cpp: generated code would pass {limits.MAX_GENERATED_SOURCE_BYTES:,} bytes at node {node.name} ({node.op}): "
                f"{body_bytes:,} bytes of code and up to {weight_bytes:,} of weights (yukti.limits.MAX_GENERATED_SOURCE_BYTES); "
                "a network this large is better served by onnxruntime or torch_aot")

    for name in graph.outputs:
        if name in graph.non_float_outputs:  # bools are computed as 0/1 floats (ops/logical.py), but not returned so
            producer = next((n for n in graph.nodes if name in n.outputs), None)
            where = f" (node {producer.name}, {producer.op})" if producer else ""
            raise UnsupportedModelError(f"cpp: graph output {name!r}{where} is {graph.non_float_outputs[name]}; "
                                        "generated C++ returns float32 outputs only")

    weights = []
    for ident, (_, flat) in ctx.constants.items():
        values = ", ".join(c_float(v) for v in flat)
        weights.append(f"alignas(64) static constexpr float {ident}[{max(len(flat), 1)}] = {{{values}}};")
    header = "\n".join([
        "// Generated by yukti (runners/cpp): the network's weights, baked in.",
        "#pragma once",
        "",
        *weights,
        "",
    ])
    arena = max(per_sample * tile, ALIGN_FLOATS)
    in_sizes = tuple(graph.values[n].size for n in graph.inputs)
    out_sizes = tuple(graph.values[n].size for n in graph.outputs)
    check = "\n".join(
        f"  for (int64_t i = 0; i < batch * {size}; ++i) if (!finite_bits(in[{k}][i])) return 1 + i;"
        for k, size in enumerate(in_sizes)
    )
    tile_in = ", ".join(f"in[{k}] + n0 * {size}" for k, size in enumerate(in_sizes))
    tile_out = ", ".join(f"out[{k}] + n0 * {size}" for k, size in enumerate(out_sizes))
    columns = ""
    if len(graph.inputs) == 1 and len(graph.values[graph.inputs[0]].shape) == 1:
        features = in_sizes[0]
        columns = f"""
// Column (SoA) input: one pointer per feature; a tile is gathered into a small local buffer, so
// columnar event data is never packed into a full row-major array.
extern "C" int64_t {prefix}infer_columns(const float* const* columns, float* const* out, int64_t batch) {{
  alignas(64) float arena[kArenaFloats];
  alignas(64) float rows[kTile * {features}];
  for (int64_t n0 = 0; n0 < batch; n0 += kTile) {{
    const int64_t nb = std::min<int64_t>(kTile, batch - n0);
    for (int64_t f = 0; f < {features}; ++f) {{
      const float* column = columns[f] + n0;
      for (int64_t n = 0; n < nb; ++n) rows[n * {features} + f] = column[n];
    }}
    const float* tile_in[] = {{rows}};
    float* tile_out[] = {{{tile_out}}};
    run_tile(tile_in, tile_out, nb, arena);
  }}
  return 0;
}}

extern "C" int64_t {prefix}infer_columns_checked(const float* const* columns, float* const* out, int64_t batch) {{
  for (int64_t f = 0; f < {features}; ++f)
    for (int64_t n = 0; n < batch; ++n)
      if (!finite_bits(columns[f][n])) return 1 + f * batch + n;
  return {prefix}infer_columns(columns, out, batch);
}}
"""
    body_text = "\n".join(body)
    names_in = tuple(input_names) if input_names is not None else tuple(graph.inputs)
    names_out = tuple(output_names) if output_names is not None else tuple(graph.outputs)
    if len(names_in) != len(graph.inputs) or len(names_out) != len(graph.outputs):
        raise ValueError(f"{len(names_in)} input and {len(names_out)} output names for a graph with "
                         f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs")
    name_table = f"""
// The model's own input and output names, as escaped string literals (any text a model file holds;
// the code above uses derived identifiers only). i out of range: nullptr.
static const char* const kInputNames[] = {{{", ".join(c_string_literal(n) for n in names_in)}}};
static const char* const kOutputNames[] = {{{", ".join(c_string_literal(n) for n in names_out)}}};
extern "C" const char* {prefix}input_name(int64_t i) {{ return i >= 0 && i < {len(names_in)} ? kInputNames[i] : nullptr; }}
extern "C" const char* {prefix}output_name(int64_t i) {{ return i >= 0 && i < {len(names_out)} ? kOutputNames[i] : nullptr; }}
"""
    source = f"""// Generated by yukti (runners/cpp). Inputs/outputs are float32, row-major, batch first.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "model.hpp"

namespace {{
constexpr int64_t kTile = {tile};
constexpr int64_t kArenaFloats = {arena};

// A vector of 8 floats (GCC/Clang vector extension): explicit accumulators stay in registers.
typedef float vf8 __attribute__((vector_size(32)));
inline vf8 load8(const float* p) {{
  vf8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}}

// NaN/inf test on the bit pattern: stays correct under -ffast-math, where std::isfinite folds to true.
inline bool finite_bits(float x) {{
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}}

// One tile of nb <= kTile samples; in/out point at the tile's first sample.
inline void run_tile(const float* const* in, float* const* out, int64_t nb, float* arena) {{
{chr(10).join(declarations)}
{body_text}
}}
}}  // namespace

// Runs the network on `batch` samples. No heap allocation, no mutable global state: thread-safe.
extern "C" int64_t {prefix}infer(const float* const* in, float* const* out, int64_t batch) {{
  alignas(64) float arena[kArenaFloats];
  for (int64_t n0 = 0; n0 < batch; n0 += kTile) {{
    const float* tile_in[] = {{{tile_in}}};
    float* tile_out[] = {{{tile_out}}};
    run_tile(tile_in, tile_out, std::min<int64_t>(kTile, batch - n0), arena);
  }}
  return 0;
}}

// As infer, after checking every input value is finite: returns 1 + the flat index of the first
// NaN/inf (of the first input holding one) and computes nothing, or 0.
extern "C" int64_t {prefix}infer_checked(const float* const* in, float* const* out, int64_t batch) {{
{check}
  return {prefix}infer(in, out, batch);
}}
{columns}{name_table}
// Native timing: `n_groups` timed groups of `reps` back-to-back infer calls each; the group's
// nanoseconds into ns. Grouping keeps the clock's own ~20 ns out of sub-microsecond calls.
extern "C" void {prefix}time_infer(const float* const* in, float* const* out, int64_t batch, int64_t n_groups, int64_t reps, int64_t* ns) {{
  for (int64_t g = 0; g < n_groups; ++g) {{
    const auto start = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < reps; ++r) {{
      {prefix}infer(in, out, batch);
      asm volatile("" ::: "memory");  // each call's stores must happen: no merging of repeated calls
    }}
    const auto stop = std::chrono::steady_clock::now();
    ns[g] = std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count();
  }}
}}
"""
    for text in (header, source):
        check_source_text(text)
    return Source(header, source, tile, arena, len(graph.inputs), len(graph.outputs), in_sizes, out_sizes,
                  tuple(tuple(int(d) for d in graph.values[n].shape) for n in graph.outputs))


class _Generated:
    """The C++ of the last few models, so `supports()`, `prepare` and `export` of one model build its
    IR and generate its code once. Bounded by count and by text size; refusals are kept too."""

    MAX_ENTRIES = 8
    MAX_BYTES = 128 << 20

    def __init__(self) -> None:
        self._entries: OrderedDict[tuple, Source | UnsupportedModelError] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _size(found: Source | UnsupportedModelError) -> int:
        return len(found.header) + len(found.body) if isinstance(found, Source) else 0

    def get(self, model: Model, prefix: str) -> Source:
        names_in, names_out = tuple(s.name for s in model.inputs), tuple(s.name for s in model.outputs)
        key = (model.hash, prefix, names_in, names_out)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
        if found is None:  # generated outside the lock: two threads may both generate (same, pure result)
            try:
                found = generate(ir.from_onnx(model.onnx), prefix=prefix, input_names=names_in, output_names=names_out)
            except UnsupportedModelError as exc:
                found = exc
            with self._lock:
                self._entries[key] = found
                while len(self._entries) > self.MAX_ENTRIES or sum(map(self._size, self._entries.values())) > self.MAX_BYTES:
                    self._entries.popitem(last=False)
        if isinstance(found, UnsupportedModelError):
            raise UnsupportedModelError(str(found))  # a fresh exception: the kept one's traceback must not grow
        return found


_generated = _Generated()


def for_model(model: Model, *, prefix: str = "") -> Source:
    """The C++ of `model` (with its own input and output names), generated once per model hash and
    remembered for the next few models; raises UnsupportedModelError naming what an emitter refuses."""
    return _generated.get(model, prefix)


_OUTSIDE_SOURCE_CHARSET = re.compile(r"[^\x20-\x7e\n]|\\\n")


def check_source_text(text: str) -> None:
    """The last gate: generated C++ is printable ASCII lines, with no backslash-newline (which would
    join a line, a comment included, to the next). Names are derived before they get here; this
    catches an emitter that would ever let raw text through."""
    found = _OUTSIDE_SOURCE_CHARSET.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        raise RuntimeError(f"cpp: generated code holds {found.group()!r} on line {line}: an emitter wrote raw text "
                           "(a bug in yukti, not in the model)")


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else line for line in text.splitlines())
