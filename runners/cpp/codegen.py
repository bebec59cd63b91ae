"""IR -> C++ source: the API declared in a header (`model.hpp`), weights and the tiled `infer` in
`model.cpp` (an export names them after the model: Source.files).

The graph runs tile by tile (`kTile` samples at a time) so every intermediate lives in one arena
planned here, sized for a tile: on the stack of the calling thread, and one per pool worker when a
call asks for threads (a batch of two tiles or more is then split by tile over the caller and the
library's worker pool, see POOL_SOURCE). No heap allocation per call and no global state but the
pool, hence calls from several threads are safe. Each operator's code comes from its emitter
(runners/cpp/ops/), a pure function of the node and the shapes.

Symbols: the C entry points are `<prefix>infer`, `<prefix>infer_threads`, ... (the runner loads
them with no prefix); with a prefix, the header also declares a C++ API in the namespace named by
the prefix (`yukti_<model>::infer`), so several exported models link into one program.

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
from yukti.runners.cpp import isa as isa_module
from yukti.runners.cpp.context import EmitContext
from yukti.runners.cpp.ops import ALIASING_OPS, EMITTERS, c_float, gemm, softmax
from yukti import limits
from yukti.errors import UnsupportedModelError
from yukti.model import Model
from yukti.safe_names import c_string_literal, is_identifier, safe_comment

ALIGN_FLOATS = 16  # 64 bytes
MAX_FLOAT_LITERAL_BYTES = 20  # "-0x1.fffffep+127f, ": the longest weight as text
ARENA_TARGET_FLOATS = 48 * 1024  # ~192 KiB per tile: stays within L2 on current CPUs
MAX_TILE = 64
HEADER_INCLUDE = '#include "model.hpp"'  # the generated source's one include of its header (see Source.files)
MAX_THREADS = 256  # threads one call may use (the caller and pool workers); more are clamped to it
POOL_SPIN_NS = 100_000  # how long an idle worker polls for the next batch before it sleeps

# The worker pool of the generated library (the same text for every model; it calls run_job_tile).
POOL_SOURCE = """
inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// The worker pool: one per library, made at the first call that wants threads (or by
// prepare_threads); its workers live until the library is unloaded or the process exits. Each
// worker computes in an arena of its own, allocated once when it starts. An idle worker polls for
// kSpinNs before it sleeps: back-to-back batches start without a wake-up.
//
// A batch's tiles are cut into one contiguous range per thread taking part (the caller and up to
// threads - 1 workers). Each thread claims the tiles of its own range, front to back, on a counter
// no other thread touches until it steals: then, its range done, it claims from the others'. So a
// thread's tiles are the same call after call (their inputs and outputs stay in its core's cache,
// where one shared counter scattered them over the cores and moved every line of a tile each call),
// a claim costs no cache-line transfer, and a worker that is slow to wake costs nothing (the others
// take its range). Completed tiles are counted once per thread and batch.
//
// One batch at a time: a call that finds the pool busy with another caller's batch computes on
// its own thread rather than queue. Concurrent callers bring their own threads already, nobody
// waits for someone else's batch, and the pool needs no per-call queue or allocation.
//
// Claims: each range's counter packs (batch number << 32 | its next tile); a thread takes a tile
// with a compare-exchange that checks the batch number too, so a worker that wakes late can never
// take a tile of a later batch, and reads the job only after it claimed a tile of it. The caller
// returns once every tile is done (`done_`), so no worker touches the job after that.
class Pool {
 public:
  Pool() = default;
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  ~Pool() {
    stopping_.store(true);
    { std::lock_guard<std::mutex> lock(sleep_); }
    wake_.notify_all();
    for (std::thread& worker : workers_) worker.join();
  }

  // Starts workers until there are `helpers` (when missing); returns how many there are.
  int64_t reserve(int64_t helpers) {
    std::lock_guard<std::mutex> busy(busy_);
    return grow(helpers);
  }

  // Runs the `n_tiles` tiles of `job` on the caller (with `own`) and up to `helpers` workers. false
  // (and nothing computed) when another batch holds the pool or no worker can start.
  bool run(const Job& job, int64_t n_tiles, int64_t helpers, Scratch& own) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock() || n_tiles >= (int64_t{1} << 31)) return false;
    const int64_t workers = std::min(grow(helpers), helpers);
    if (workers == 0) return false;
    const int64_t parts = workers + 1;
    job_ = job;
    done_.store(0, std::memory_order_relaxed);
    parts_.store(parts, std::memory_order_relaxed);
    const uint64_t number = (batch_.load(std::memory_order_relaxed) + 1) & 0xffffffffu;
    for (int64_t part = 0; part < parts; ++part) {  // thread `part` gets tiles [first, end)
      ranges_[part].end.store(n_tiles * (part + 1) / parts, std::memory_order_relaxed);
      ranges_[part].next.store(number << 32 | static_cast<uint64_t>(n_tiles * part / parts), std::memory_order_release);
    }
    batch_.store(number);  // seq_cst: ordered with sleepers_ below
    if (sleepers_.load() > 0) {
      { std::lock_guard<std::mutex> lock(sleep_); }  // a worker between its check and its wait is now waiting
      wake_.notify_all();
    }
    work(number, 0, own);
    for (int spins = 0; done_.load(std::memory_order_acquire) != n_tiles; ++spins) {
      if (spins < 4096) cpu_relax(); else std::this_thread::yield();  // a worker finishes its last tile
    }
    return true;
  }

  // False in a forked child: it has none of its parent's threads to stop or to wait for.
  bool owned_here() const {
#if defined(__unix__) || defined(__APPLE__)
    return getpid() == pid_;
#else
    return true;
#endif
  }

 private:
  // One thread's share of a batch. Own cache line: its owner's claims move no line of another's.
  struct alignas(64) Range {
    std::atomic<uint64_t> next{0};  // batch number << 32 | the next tile to claim
    std::atomic<int64_t> end{0};  // one past the last tile; set before `next` is published
  };

  // Under busy_: starts workers up to `helpers` (at most kMaxThreads - 1). A thread the system
  // refuses leaves fewer; the call then runs with those.
  int64_t grow(int64_t helpers) {
    if (!owned_here()) return 0;  // forked child: compute on the caller
    helpers = std::min<int64_t>(helpers, kMaxThreads - 1);
    const uint64_t current = batch_.load(std::memory_order_relaxed);
    try {
      while (static_cast<int64_t>(workers_.size()) < helpers) {
        workers_.emplace_back(&Pool::worker, this, static_cast<int64_t>(workers_.size()), current);
      }
    } catch (const std::exception&) {  // std::system_error (no more threads) or std::bad_alloc
    }
    return static_cast<int64_t>(workers_.size());
  }

  // The next tile of `range` for batch `number`, or -1 when it has none left (or holds another batch).
  int64_t claim(Range& range, uint64_t number) {
    uint64_t seen = range.next.load(std::memory_order_acquire);
    while ((seen >> 32) == number) {
      const int64_t tile = static_cast<int64_t>(seen & 0xffffffffu);
      if (tile >= range.end.load(std::memory_order_relaxed)) return -1;
      if (range.next.compare_exchange_weak(seen, seen + 1, std::memory_order_acquire, std::memory_order_acquire)) return tile;
    }
    return -1;
  }

  // Thread `part`'s range of batch `number`, then the others' (stealing), tile by tile.
  void work(uint64_t number, int64_t part, Scratch& s) {
    const int64_t parts = parts_.load(std::memory_order_relaxed);
    int64_t done = 0;
    for (int64_t k = 0; k < parts; ++k) {
      Range& range = ranges_[(part + k) % parts];
      for (int64_t tile = claim(range, number); tile >= 0; tile = claim(range, number)) {
        run_job_tile(job_, tile, s);
        ++done;
      }
    }
    if (done > 0) done_.fetch_add(done, std::memory_order_release);
  }

  // A batch numbered other than `seen` (its number), or any number once stopping: polls a while, then sleeps.
  uint64_t next_batch(uint64_t seen) {
    const auto start = std::chrono::steady_clock::now();
    for (int spins = 1;; ++spins) {
      const uint64_t number = batch_.load(std::memory_order_acquire);
      if (number != seen || stopping_.load(std::memory_order_relaxed)) return number;
      cpu_relax();
      if (spins % 256 == 0) {
        if (std::chrono::steady_clock::now() - start > std::chrono::nanoseconds(kSpinNs)) break;
        std::this_thread::yield();  // a core shared with the caller (more threads than cores) goes to it
      }
    }
    std::unique_lock<std::mutex> lock(sleep_);
    sleepers_.fetch_add(1);  // seq_cst: run() reads it after publishing a batch
    wake_.wait(lock, [&] { return stopping_.load() || batch_.load() != seen; });
    sleepers_.fetch_sub(1);
    return batch_.load(std::memory_order_acquire);
  }

  void worker(int64_t index, uint64_t seen) {
    std::unique_ptr<Scratch> scratch(new (std::nothrow) Scratch);
    if (!scratch) return;  // no memory for an arena: this worker never takes a tile
    for (;;) {
      seen = next_batch(seen);
      if (stopping_.load()) return;
      if (index + 1 < parts_.load(std::memory_order_relaxed)) work(seen, index + 1, *scratch);
    }
  }

  static constexpr int64_t kSpinNs = POOL_SPIN_NS;
  std::mutex busy_;  // held by the call whose batch the pool runs
  std::mutex sleep_;
  std::condition_variable wake_;
  std::vector<std::thread> workers_;
  Range ranges_[kMaxThreads];
  std::atomic<uint64_t> batch_{0};  // the number of the latest batch
  std::atomic<int64_t> done_{0};
  std::atomic<int64_t> parts_{0};  // threads taking part in the current batch: the caller, then workers by index
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stopping_{false};
  Job job_{};
#if defined(__unix__) || defined(__APPLE__)
  const pid_t pid_ = getpid();
#endif
};

// The library's pool, made at its first use. Destroyed (workers stopped and joined) when the library
// unloads or the process exits, except in a forked child, where the workers are its parent's.
Pool& pool() {
  static struct Holder {
    Pool* pool = new Pool;
    ~Holder() {
      if (pool->owned_here()) delete pool;
    }
  } holder;
  return *holder.pool;
}
""".replace("POOL_SPIN_NS;", f"{POOL_SPIN_NS};")


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
    input_shapes: tuple[tuple[int, ...], ...] = ()
    namespace: str = ""  # of the header's C++ API ("" without a symbol prefix: C entry points only)
    columns: int = 0  # features of column (SoA) input (infer_columns); 0: the model takes none
    max_batch: int = 0  # the largest batch a call takes (flat indices fit in int64_t)

    def files(self, stem: str) -> dict[str, str]:
        """The header and source as `<stem>.hpp` and `<stem>.cpp`, the source including that header
        (the runner's own build keeps the names model.hpp / model.cpp)."""
        if not is_identifier(stem):
            raise ValueError(f"file stem {stem!r} must be an identifier ([A-Za-z][A-Za-z0-9_]*)")
        return {f"{stem}.hpp": self.header, f"{stem}.cpp": self.body.replace(HEADER_INCLUDE, f'#include "{stem}.hpp"', 1)}


FUSIBLE_PRODUCERS = {"Gemm", "MatMul", "Conv"}
FUSIBLE_ACTIVATIONS = {"Relu"}


def _dense_layer(graph: ir.Graph, node: ir.Node) -> bool:
    """A node ops/gemm.py computes as a dense layer whose outputs keep their axis (a matrix, not a
    vector, of weights)."""
    if node.op not in ("Gemm", "MatMul") or len(node.inputs) < 2 or node.attr("transA", 0):
        return False
    a, b = graph.values.get(node.inputs[0]), graph.values.get(node.inputs[1])
    return a is not None and b is not None and gemm.dense_operands(a, b) and b.const.ndim == 2


def _softmax_over_last_axis(graph: ir.Graph, node: ir.Node) -> bool:
    rank = len(graph.values[node.inputs[0]].shape) + 1
    return softmax.softmax_axis(node, graph.opset, rank) == rank - 1


def fuse_activations(graph: ir.Graph) -> ir.Graph:
    """Gemm/MatMul/Conv followed by Relu (its only consumer) becomes one node: one pass over memory
    less per layer; so does a dense layer followed by a Softmax over its outputs (a classifier's
    head), which then takes each row's softmax while the logits are in registers (ops/gemm.py).
    Returns a new Graph; the input graph is left as it was."""
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
        elif (node.op == "Softmax" and source is not None and _dense_layer(graph, source)
              and consumers.get(node.inputs[0]) == 1 and node.inputs[0] not in graph.outputs
              and id(source) not in replaced and _softmax_over_last_axis(graph, node)):
            replaced[id(source)] = ir.Node(source.op, source.name, list(source.inputs), [node.outputs[0]],
                                           {**source.attrs, "fused_softmax": 1})
            absorbed.add(id(node))
    for node in graph.nodes:
        if id(node) in absorbed:
            continue
        fused.append(replaced.get(id(node), node))
    return ir.Graph(graph.inputs, graph.outputs, graph.values, fused, graph.opset, graph.non_float_outputs)


def generate(graph: ir.Graph, *, prefix: str = "", fuse: bool = True,
             input_names: tuple[str, ...] | None = None, output_names: tuple[str, ...] | None = None,
             isa: isa_module.Isa | None = None) -> Source:
    """C++ for `graph`. `prefix` starts every exported symbol (an identifier, or ""; with one, the
    header declares the C++ API in the namespace `prefix` less its trailing '_'); `input_names` and
    `output_names` (the model's own, any text) are written as escaped string literals only. `isa`:
    the target's vector width and registers (runners/cpp/isa.py), which decide the kernels' blocking;
    default: what the compiler targets with -march=native (the cpp backend's default)."""
    if isa is None:
        isa = isa_module.detect("native")
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

    ctx = EmitContext(graph, pointers, isa=isa)
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
    arena = max(per_sample * tile, ALIGN_FLOATS)
    in_sizes = tuple(graph.values[n].size for n in graph.inputs)
    out_sizes = tuple(graph.values[n].size for n in graph.outputs)
    in_shapes = tuple(tuple(int(d) for d in graph.values[n].shape) for n in graph.inputs)
    out_shapes = tuple(tuple(int(d) for d in graph.values[n].shape) for n in graph.outputs)
    # column (SoA) input: one pointer per feature, for a model with a single input of one axis per sample
    features = in_sizes[0] if len(graph.inputs) == 1 and len(in_shapes[0]) == 1 else 0
    # the largest batch whose flat indices (and the checked calls' 1 + index) fit in int64_t
    max_batch = (2**63 - 1 - tile) // max(1, *in_sizes, *out_sizes)
    names_in = tuple(input_names) if input_names is not None else tuple(graph.inputs)
    names_out = tuple(output_names) if output_names is not None else tuple(graph.outputs)
    if len(names_in) != len(graph.inputs) or len(names_out) != len(graph.outputs):
        raise ValueError(f"{len(names_in)} input and {len(names_out)} output names for a graph with "
                         f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs")
    namespace = prefix.rstrip("_") if prefix else ""
    header = _api_header(prefix=prefix, namespace=namespace, tile=tile, max_batch=max_batch, in_sizes=in_sizes,
                         out_sizes=out_sizes, in_shapes=in_shapes, out_shapes=out_shapes, features=features)
    row_checks = "\n".join(f"  clean &= check_span(job.bad[{k}], job.in[{k}] + n0 * {size}, nb * {size}, n0 * {size});"
                           for k, size in enumerate(in_sizes))
    column_checks = f"""  if (job.columns) {{
    for (int64_t f = 0; f < {features}; ++f) clean &= check_span(job.bad[f], job.in[f] + n0, nb, n0);
    return clean;
  }}
""" if features else ""
    tile_out = ", ".join(f"job.out[{k}] + n0 * {size}" for k, size in enumerate(out_sizes))
    rows_in = ", ".join(f"job.in[{k}] + n0 * {size}" for k, size in enumerate(in_sizes))
    if features:
        tile_in = f"""const float* tile_in[1];
  if (job.columns) {{
    // Column (SoA) input: the tile is gathered into a small buffer, so columnar event data is never
    // packed into a full row-major array.
    for (int64_t f = 0; f < {features}; ++f) {{
      const float* column = job.in[f] + n0;
      for (int64_t n = 0; n < nb; ++n) s.rows[n * {features} + f] = column[n];
    }}
    tile_in[0] = s.rows;
  }} else {{
    tile_in[0] = {rows_in};
  }}"""
        rows_buffer = f"\n  float rows[kTile * {features}];  // a tile of column input, gathered into rows"
    else:
        tile_in = f"const float* tile_in[] = {{{rows_in}}};"
        rows_buffer = ""
    columns = ""
    if features:
        columns = f"""
// Column (SoA) input: `columns` holds one pointer per feature (batch values each).
extern "C" int64_t {prefix}infer_columns_threads(const float* const* columns, float* const* out, int64_t batch, int64_t threads) {{
  return run_job(Job{{columns, out, batch, true, nullptr}}, threads);
}}

extern "C" int64_t {prefix}infer_columns(const float* const* columns, float* const* out, int64_t batch) {{
  return {prefix}infer_columns_threads(columns, out, batch, 1);
}}

// 1 + f * batch + n for the first feature f holding a NaN/inf, n its first row; or 0 (as infer_checked).
extern "C" int64_t {prefix}infer_columns_checked_threads(const float* const* columns, float* const* out, int64_t batch, int64_t threads) {{
  return run_checked(Job{{columns, out, batch, true, nullptr}}, threads);
}}

extern "C" int64_t {prefix}infer_columns_checked(const float* const* columns, float* const* out, int64_t batch) {{
  return {prefix}infer_columns_checked_threads(columns, out, batch, 1);
}}
"""
    body_text = "\n".join(body)
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
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <thread>
#include <vector>
#if defined(__unix__) || defined(__APPLE__)
#include <unistd.h>
#endif

{HEADER_INCLUDE}

namespace {{
constexpr int64_t kTile = {tile};
constexpr int64_t kArenaFloats = {arena};
constexpr int64_t kMaxBatch = {max_batch};
constexpr int64_t kMaxThreads = {MAX_THREADS};

{isa_module.vector_prelude(isa)}

// NaN/inf test on the bit pattern: stays correct under -ffast-math, where std::isfinite folds to true.
inline bool finite_bits(float x) {{
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  return (bits & 0x7f800000u) != 0x7f800000u;
}}

// The network's weights, baked in (here, not in the header: each export is one library of its own).
{chr(10).join(weights)}

// One tile of nb <= kTile samples; in/out point at the tile's first sample.
inline void run_tile(const float* const* in, float* const* out, int64_t nb, float* arena) {{
{chr(10).join(declarations)}
{body_text}
}}

// A call's work: `in` holds one pointer per input (per feature for column input), `out` one per output.
struct Job {{
  const float* const* in;
  float* const* out;
  int64_t batch;
  bool columns;
  // checked calls: per input (per feature), the least flat index of a NaN/inf found; else nullptr
  std::atomic<int64_t>* bad;
}};
constexpr int64_t kCheckSlots = {max(len(in_sizes), features)};

// The index of the first NaN/inf among x[0..n), or -1. Whole blocks first, with no exit inside a
// block, which the compiler vectorises (an exit per value keeps a loop scalar); then value by value
// from the block holding one, or through the last partial block.
inline int64_t first_non_finite(const float* x, int64_t n) {{
  constexpr int64_t kBlock = 64;
  int64_t b = 0;
  for (; b + kBlock <= n; b += kBlock) {{
    uint32_t any = 0;
    for (int64_t i = 0; i < kBlock; ++i) {{
      uint32_t bits;
      std::memcpy(&bits, x + b + i, sizeof bits);
      any |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
    }}
    if (any != 0) break;
  }}
  for (int64_t i = b; i < n; ++i) if (!finite_bits(x[i])) return i;
  return -1;
}}

// Notes in `first` the least flat index (offset + i) of a NaN/inf in x[0..n); false when there is one.
inline bool check_span(std::atomic<int64_t>& first, const float* x, int64_t n, int64_t offset) {{
  const int64_t i = first_non_finite(x, n);
  if (i < 0) return true;
  int64_t seen = first.load(std::memory_order_relaxed);
  while (offset + i < seen && !first.compare_exchange_weak(seen, offset + i, std::memory_order_relaxed)) {{
  }}
  return false;
}}

// A checked call's test of the tile's input values, just before the tile is computed (its inputs
// are read from memory once, and the check is split over the threads with the tiles). Every tile is
// tested, so the least index is found whichever thread takes which tile; false: the tile holds a
// NaN/inf and is not computed.
inline bool tile_is_finite(const Job& job, int64_t n0, int64_t nb) {{
  bool clean = true;
{column_checks}{row_checks}
  return clean;
}}

// What one thread computes a tile with: every intermediate of the tile lives in `arena`.
struct alignas(64) Scratch {{
  float arena[kArenaFloats];{rows_buffer}
}};

// Tile t of `job` (samples t * kTile onwards). Tiles are the unit of work: a batch split over any
// number of threads computes exactly what one thread computes.
inline void run_job_tile(const Job& job, int64_t t, Scratch& s) {{
  const int64_t n0 = t * kTile;
  const int64_t nb = std::min<int64_t>(kTile, job.batch - n0);
  if (job.bad != nullptr && !tile_is_finite(job, n0, nb)) return;
  float* tile_out[] = {{{tile_out}}};
  {tile_in}
  run_tile(tile_in, tile_out, nb, s.arena);
}}
{POOL_SOURCE}
// Runs `job`: on the calling thread alone, or split by tile over it and up to threads - 1 pool
// workers when the batch spans at least two tiles (a smaller batch never waits for a hand-off).
int64_t run_job(const Job& job, int64_t threads) {{
  if (job.batch < 0 || job.batch > kMaxBatch) return -1;
  const int64_t n_tiles = (job.batch + kTile - 1) / kTile;
  Scratch own;  // the caller's arena, on its stack as a serial call always had it
  threads = std::min<int64_t>(threads, std::min<int64_t>(n_tiles, kMaxThreads));
  if (threads > 1 && job.batch >= 2 * kTile && pool().run(job, n_tiles, threads - 1, own)) return 0;
  for (int64_t t = 0; t < n_tiles; ++t) run_job_tile(job, t, own);
  return 0;
}}

// run_job for a checked call: 1 + the flat index of the first NaN/inf (see infer_checked), or 0.
// Apart from run_job, so that an unchecked call carries none of this.
int64_t run_checked(Job job, int64_t threads) {{
  std::atomic<int64_t> bad[kCheckSlots];
  for (std::atomic<int64_t>& slot : bad) slot.store(INT64_MAX, std::memory_order_relaxed);
  job.bad = bad;
  const int64_t status = run_job(job, threads);
  if (status != 0) return status;
  for (int64_t k = 0; k < (job.columns ? {features} : {len(in_sizes)}); ++k) {{  // the first input (feature) holding one
    const int64_t first = bad[k].load(std::memory_order_relaxed);
    if (first != INT64_MAX) return 1 + (job.columns ? k * job.batch : 0) + first;
  }}
  return 0;
}}
}}  // namespace

// Runs the network on `batch` samples with up to `threads` threads (see run_job). Thread-safe: the
// only shared state is the worker pool, which serves one call at a time (see Pool).
extern "C" int64_t {prefix}infer_threads(const float* const* in, float* const* out, int64_t batch, int64_t threads) {{
  return run_job(Job{{in, out, batch, false, nullptr}}, threads);
}}

extern "C" int64_t {prefix}infer(const float* const* in, float* const* out, int64_t batch) {{
  return {prefix}infer_threads(in, out, batch, 1);
}}

// As infer, checking every input value is finite: returns 1 + the flat index of the first NaN/inf
// (of the first input holding one), or 0. Each tile is checked just before it is computed, so on a
// NaN/inf the outputs are unspecified (the tiles without one are computed).
extern "C" int64_t {prefix}infer_checked_threads(const float* const* in, float* const* out, int64_t batch, int64_t threads) {{
  return run_checked(Job{{in, out, batch, false, nullptr}}, threads);
}}

extern "C" int64_t {prefix}infer_checked(const float* const* in, float* const* out, int64_t batch) {{
  return {prefix}infer_checked_threads(in, out, batch, 1);
}}
{columns}
// Starts the workers `threads` needs now rather than at the first large batch. Returns how many
// threads a call can use: fewer than asked only when the system refuses to start a thread.
extern "C" int64_t {prefix}prepare_threads(int64_t threads) {{
  if (threads <= 1) return 1;
  return 1 + pool().reserve(std::min<int64_t>(threads, kMaxThreads) - 1);
}}
{name_table}
// Native timing: `n_groups` timed groups of `reps` back-to-back infer calls each; the group's
// nanoseconds into ns. Grouping keeps the clock's own ~20 ns out of sub-microsecond calls.
extern "C" void {prefix}time_infer(const float* const* in, float* const* out, int64_t batch, int64_t n_groups, int64_t reps, int64_t* ns,
                                   int64_t threads) {{
  for (int64_t g = 0; g < n_groups; ++g) {{
    const auto start = std::chrono::steady_clock::now();
    for (int64_t r = 0; r < reps; ++r) {{
      {prefix}infer_threads(in, out, batch, threads);
      asm volatile("" ::: "memory");  // each call's stores must happen: no merging of repeated calls
    }}
    const auto stop = std::chrono::steady_clock::now();
    ns[g] = std::chrono::duration_cast<std::chrono::nanoseconds>(stop - start).count();
  }}
}}
"""
    for text in (header, source):
        check_source_text(text)
    return Source(header, source, tile, arena, len(graph.inputs), len(graph.outputs), in_sizes, out_sizes, out_shapes,
                  input_shapes=in_shapes, namespace=namespace, columns=features, max_batch=max_batch)

def _c_array(values: tuple[int, ...]) -> str:
    return "{" + ", ".join(map(str, values)) + "}"


def _api_header(*, prefix: str, namespace: str, tile: int, max_batch: int, in_sizes: tuple[int, ...],
                out_sizes: tuple[int, ...], in_shapes: tuple[tuple[int, ...], ...], out_shapes: tuple[tuple[int, ...], ...],
                features: int) -> str:
    """The header: declarations only (no weights, no code), so any number of translation units and
    exported models can include theirs. The C entry points carry `prefix`; with a prefix, the
    namespace `namespace` (the prefix without its last '_') declares the C++ API over them: sizes,
    shapes and limits as constants and the calls with `threads` defaulting to 1. Without a prefix
    (the runner's in-process library) the namespace's calls would find themselves: C names only."""
    rows = "const float* const* in, float* const* out, int64_t batch"
    cols = "const float* const* columns, float* const* out, int64_t batch"
    c_api = [
        f"int64_t {prefix}infer({rows});",
        f"int64_t {prefix}infer_threads({rows}, int64_t threads);",
        f"int64_t {prefix}infer_checked({rows});",
        f"int64_t {prefix}infer_checked_threads({rows}, int64_t threads);",
    ]
    if features:
        c_api += [
            f"int64_t {prefix}infer_columns({cols});",
            f"int64_t {prefix}infer_columns_threads({cols}, int64_t threads);",
            f"int64_t {prefix}infer_columns_checked({cols});",
            f"int64_t {prefix}infer_columns_checked_threads({cols}, int64_t threads);",
        ]
    c_api += [
        f"int64_t {prefix}prepare_threads(int64_t threads);",
        f"const char* {prefix}input_name(int64_t i);",
        f"const char* {prefix}output_name(int64_t i);",
        f"void {prefix}time_infer({rows}, int64_t n_groups, int64_t reps, int64_t* ns, int64_t threads);",
    ]
    lines = [
        "// Generated by yukti (runners/cpp): the API of one network. Its code and weights are in the .cpp",
        "// file generated with this header; nothing here is defined but constants and inline forwarders.",
        "//",
        "// Inputs and outputs are float32, row-major, batch first: `in` and `out` hold one pointer per input",
        "// and per output (column input: one pointer per feature, `batch` values each). Calls are",
        "// thread-safe. They return 0, or -1 when batch < 0 or batch > kMaxBatch; the *_checked calls",
        "// return 1 + the flat index of the first NaN/inf input value (of the first input holding one)",
        "// instead, and the outputs are unspecified then. `threads`: how many threads may share a batch",
        "// of at least 2 * kTile samples, the caller and threads - 1 workers of a pool the library starts",
        "// once (at prepare_threads or at the first such call) and keeps; a smaller batch runs on the",
        "// caller alone.",
        "#pragma once",
        "#include <cstdint>",
        "",
        'extern "C" {',
        *c_api,
        '}  // extern "C"',
    ]
    if namespace:
        shapes = []
        for kind, dims in (("Input", in_shapes), ("Output", out_shapes)):
            for i, shape in enumerate(dims):
                note = "" if shape else "  // rank 0: one value per sample"
                shapes.append(f"inline constexpr int64_t k{kind}Shape{i}[] = {_c_array(shape or (1,))};{note}")
        calls = [
            f"inline int64_t infer({rows}, int64_t threads = 1) {{ return {prefix}infer_threads(in, out, batch, threads); }}",
            f"inline int64_t infer_checked({rows}, int64_t threads = 1) {{\n"
            f"  return {prefix}infer_checked_threads(in, out, batch, threads);\n}}",
        ]
        if features:
            calls += [
                f"inline int64_t infer_columns({cols}, int64_t threads = 1) {{\n"
                f"  return {prefix}infer_columns_threads(columns, out, batch, threads);\n}}",
                f"inline int64_t infer_columns_checked({cols}, int64_t threads = 1) {{\n"
                f"  return {prefix}infer_columns_checked_threads(columns, out, batch, threads);\n}}",
            ]
        calls += [
            f"inline int64_t prepare_threads(int64_t threads) {{ return {prefix}prepare_threads(threads); }}",
            "// the model's own names (any text its file holds, as escaped literals); nullptr past the last",
            f"inline const char* input_name(int64_t i) {{ return {prefix}input_name(i); }}",
            f"inline const char* output_name(int64_t i) {{ return {prefix}output_name(i); }}",
        ]
        lines += [
            "",
            f"namespace {namespace} {{",
            f"inline constexpr int64_t kNumInputs = {len(in_sizes)};",
            f"inline constexpr int64_t kNumOutputs = {len(out_sizes)};",
            "// floats per sample of each input and output, and each one's shape per sample (no batch axis)",
            f"inline constexpr int64_t kInputSizes[] = {_c_array(in_sizes)};",
            f"inline constexpr int64_t kOutputSizes[] = {_c_array(out_sizes)};",
            f"inline constexpr int64_t kInputRanks[] = {_c_array(tuple(len(s) for s in in_shapes))};",
            f"inline constexpr int64_t kOutputRanks[] = {_c_array(tuple(len(s) for s in out_shapes))};",
            *shapes,
            "// samples computed together (any batch size is fine: it is split into tiles), the largest batch",
            "// (its flat indices fit in int64_t), and the most threads one call uses (more are clamped)",
            f"inline constexpr int64_t kTile = {tile};",
            f"inline constexpr int64_t kMaxBatch = {max_batch};",
            f"inline constexpr int64_t kMaxThreads = {MAX_THREADS};",
            "// column (SoA) input: infer_columns takes kColumns pointers, one per feature of the one input",
            f"inline constexpr bool kHasColumns = {'true' if features else 'false'};",
            f"inline constexpr int64_t kColumns = {features};",
            "",
            *calls,
            f"}}  // namespace {namespace}",
        ]
    return "\n".join(lines) + "\n"


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

    def get(self, model: Model, prefix: str, isa: isa_module.Isa) -> Source:
        names_in, names_out = tuple(s.name for s in model.inputs), tuple(s.name for s in model.outputs)
        key = (model.hash, prefix, names_in, names_out, isa)
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
        if found is None:  # generated outside the lock: two threads may both generate (same, pure result)
            try:
                found = generate(ir.from_onnx(model.onnx), prefix=prefix, input_names=names_in, output_names=names_out, isa=isa)
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


def for_model(model: Model, *, prefix: str = "", isa: isa_module.Isa | None = None) -> Source:
    """The C++ of `model` (with its own input and output names) for the vector ISA `isa` (default:
    -march=native's, isa.detect), generated once per (model hash, prefix, ISA) and remembered for the
    next few models; raises UnsupportedModelError naming what an emitter refuses."""
    return _generated.get(model, prefix, isa if isa is not None else isa_module.detect("native"))


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
