"""`fixed`: hls4ml's fixed-point firmware emulated bit for bit by generated integer C++.

A backend of its own rather than a `precision=` option of `cpp`: its contract is bit identity with
the `hls4ml` backend, so it reads the same options (one hls4ml configuration dict, built by
runners/hls4ml/config.py) and the graph hls4ml converts (plan.py says why), while `cpp` promises
float agreement with the ONNX reference. What it shares with `cpp` is the toolchain: the compile
path and flags of runners/cpp/compiler.py and the artifact cache.

prepare: hls4ml converts (no project written, no ap_types compiled: ~0.5 s) -> plan -> C++ (one
emitter per layer class, ops/) -> g++ (~1 s) -> ctypes. Both steps are cached: a warm prepare
imports neither hls4ml nor the compiler. A call converts float inputs as hls4ml's bridge does and
returns the float view of the output type, so outputs compare `==` with the `hls4ml` backend's.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from yukti.cache import ArtifactCache
from yukti.errors import UnsupportedModelError
from yukti.inputs import _all_finite
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Capability, Runner, Support, package_version
from yukti.fixed_point import FixedType, PrecisionError
from yukti.runners.hls4ml.config import conversion_options, layer_precisions
from yukti.runners.hls4ml.frontend import choose_source, frontend_for, pick_source
from yukti.runners.hls4ml.onnx_rewrite import onnx_rewrite_key
from yukti.runners.hls4ml.runner import HLS4MLRunner, _input_permutations
from yukti.toolchain import compiler_version, find_compiler

_REVISION = 2  # bump when the generated code changes: part of the cache key
# -mprefer-vector-width=512: GCC keeps 256-bit vectors on AVX-512 cores unless told (no effect on AVX2).
# -ffp-contract=off: table entries are computed as hls4ml's library computes them, without FMA.
# -fno-trapping-math: lets GCC vectorize floor and comparisons of the input conversion; no value
# changes (the library reads no floating-point exception flags).
FLAGS = ("-O3", "-std=c++17", "-fPIC", "-shared", "-march=native", "-mprefer-vector-width=512", "-ffp-contract=off",
         "-fno-trapping-math")
MIN_CHUNK = 64  # samples per thread below which splitting costs more than it saves
PLAN = "plan.json"
_CONVERTING = threading.Lock()
SOURCE = "model.cpp"


def precision(value: Any) -> str:
    """For `Option.check`: a type the emulation holds (yukti.fixed_point says what is accepted)."""
    try:
        FixedType.parse(value)
    except PrecisionError as exc:
        raise ValueError(str(exc)) from None
    return value


def fixed_layer_precisions(value: Any) -> dict[str, Any]:
    layer_precisions(value)  # the shape of the dict, as the hls4ml backend checks it
    for layer, entry in value.items():
        for text in (entry.values() if isinstance(entry, dict) else [entry]):
            try:
                FixedType.parse(text)
            except PrecisionError as exc:
                raise ValueError(f"layer {layer!r}: {exc}") from None
    return value


class FixedRunner(Runner):
    name = "fixed"
    description = "hls4ml fixed-point firmware emulated bit-exactly by generated integer C++ (no ap_types)"
    packages = ("hls4ml",)  # its converter decides the layers and types; nothing of it runs in a call
    fixed_point = True
    thread_safe = True  # tables are filled when the library loads; a call touches no shared state
    capabilities = Capability.OVERFLOWS
    options = {
        **conversion_options(precision_check=precision, layer_check=fixed_layer_precisions),
        "count_overflows": Option(False, type=bool, artifact=False,
                                  doc="count per layer the values each type wrapped or saturated (slower calls)"),
        "threads": Option(1, type=int, minimum=1, artifact=False, doc="threads emulating chunks of a batch at once"),
    }

    _fast: tuple | None = None  # (sample shape, output shape) of the batch-1 call path, once prepared
    _counting = False

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:
        return (True, "") if find_compiler() else (False, "no C++ compiler found (set CXX or install g++)")

    @classmethod
    def supports(cls, model: Model) -> Support:
        return HLS4MLRunner.supports(model)  # the same converter decides what can be converted

    # -- prepare -------------------------------------------------------------------------------
    def _prepare(self, model: Model, **options: Any) -> dict[str, Any]:
        threads, self._counting = int(options.pop("threads")), bool(options.pop("count_overflows"))
        started = time.perf_counter()
        plan_entry, plan_meta = _plan(model, options)
        source = (plan_entry.path / SOURCE).read_text()
        lib_entry = _compile(source, model.hash)
        build_s = time.perf_counter() - started
        self._lib = ctypes.CDLL(str(lib_entry.path / "model.so"))
        pointers = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        self._batch = self._lib.yukti_fixed_batch
        self._batch.argtypes, self._batch.restype = pointers, None
        self._batch_counted = self._lib.yukti_fixed_batch_counted
        self._batch_counted.argtypes, self._batch_counted.restype = [*pointers, ctypes.c_void_p], None
        self._slots = [tuple(slot) for slot in plan_meta["counters"]]
        self._traced = [(name, tuple(shape)) for name, shape in plan_meta["traced"]]
        self._lib.yukti_fixed_trace_size.restype = ctypes.c_long
        if self._lib.yukti_fixed_counters() != len(self._slots):
            raise UnsupportedModelError("the fixed library's overflow counters do not match its plan")
        self._counts = np.zeros(len(self._slots) + 1, np.uint64)
        self._samples = 0
        self._counts_lock = threading.Lock()
        self._in_sizes = [int(np.prod(s)) for s in plan_meta["input_shapes"]]
        self._out_sizes = [int(np.prod(s)) for s in plan_meta["output_shapes"]]
        self._in_perm = _input_permutations(model, plan_meta["input_shapes"])
        self._out_shapes = [(-1, *spec.sample_shape) for spec in model.outputs]
        if [int(np.prod(s.sample_shape)) for s in model.outputs] != self._out_sizes:
            raise UnsupportedModelError(f"the fixed plan's outputs {plan_meta['output_shapes']} do not match model "
                                        f"{model.name!r}'s outputs {[s.describe() for s in model.outputs]}")
        from yukti.runners.cpp import bridge

        self._bridge = bridge.load()  # None when it cannot be built here: ctypes then
        self._infer_address = ctypes.cast(self._lib.yukti_fixed_infer, ctypes.c_void_p).value
        self._threads = threads
        # batch-1 trigger loops: one well-formed float32 array straight to the bridge (see __call__)
        one = len(model.inputs) == 1 and len(model.outputs) == 1 and self._in_perm[0] is None
        self._fast = ((tuple(model.inputs[0].shape[1:]), (-1, *model.outputs[0].shape[1:]))
                      if one and self._bridge is not None and not self._counting and threads == 1 else None)
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="yukti-fixed") if threads > 1 else None
        return {
            "artifact_path": str(lib_entry.path),
            "artifact_bytes": lib_entry.bytes + plan_entry.bytes,
            "cache_hit": plan_entry.hit and lib_entry.hit,
            "build_s": build_s if not (plan_entry.hit and lib_entry.hit) else
            plan_entry.manifest["build_s"] + lib_entry.manifest["build_s"],
            "convert_s": plan_meta["convert_s"],
            "compile_s": lib_entry.manifest["build_s"],
            "versions": {"hls4ml": plan_meta["hls4ml"], "compiler": compiler_version(find_compiler() or "g++")},
            "source": plan_meta["source"],
            "source_why": pick_source(model, options["source"])[1],  # "auto" may take a torch module's ONNX form
            "source_path": str(plan_entry.path / SOURCE),  # the generated C++, for reading and debugging
            "layer_precisions": plan_meta["layers"],
            "threads": threads,
            "count_overflows": self._counting,
            "call_path": "bridge" if self._bridge is not None else "ctypes",
        }

    # -- run -------------------------------------------------------------------------------------
    def __call__(self, inputs: Any) -> Any:
        fast = self._fast
        if (fast is not None and not self._counting and type(inputs) is np.ndarray and inputs.dtype == np.float32 and inputs.flags.c_contiguous
                and inputs.shape[1:] == fast[0] and inputs.shape[0] > 0 and (not self._check_finite or _all_finite(inputs))):
            n = inputs.shape[0]
            output = np.empty((n, self._out_sizes[0]), np.float32)
            self._bridge.call(self._infer_address, (inputs,), (output,), n)
            return output.reshape(fast[1])
        return super().__call__(inputs)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        n = len(arrays[0])
        ins = []
        for array, perm, size in zip(arrays, self._in_perm, self._in_sizes):
            if perm is not None:  # hls4ml's firmware takes channels-last here
                array = array.transpose(perm)
            ins.append(np.ascontiguousarray(array, dtype=np.float32).reshape(n, size))
        outs = [np.empty((n, size), np.float32) for size in self._out_sizes]
        if self._counting:
            counts = np.zeros(len(self._slots) + 1, np.uint64)
            self._batch_counted(_pointers(ins), _pointers(outs), n, counts.ctypes.data)
            with self._counts_lock:  # concurrent counting calls add up, none lost
                self._counts += counts
                self._samples += n
        elif self._pool is not None and n >= 2 * MIN_CHUNK:
            bounds = np.linspace(0, n, min(self._threads, n // MIN_CHUNK) + 1).astype(int)
            futures = [self._pool.submit(self._batch, _pointers([a[s:e] for a in ins]), _pointers([o[s:e] for o in outs]),
                                         e - s) for s, e in zip(bounds[:-1], bounds[1:])]
            for future in futures:
                future.result()
        elif self._bridge is not None:
            self._bridge.call(self._infer_address, tuple(ins), tuple(outs), n)
        else:
            self._batch(_pointers(ins), _pointers(outs), n)
        return [o.reshape(shape) for o, shape in zip(outs, self._out_shapes)]

    # -- overflow accounting ---------------------------------------------------------------------
    def overflows(self) -> pd.DataFrame:
        """Per layer and counter ("accum": accumulated values a product or sum overflowed; "result":
        values the layer's result type wrapped or saturated), counted over every call since prepare
        or `reset_overflows()` with count_overflows=True; `samples` is how many samples that was."""
        rows = [{"layer": layer, "counter": counter, "overflows": int(self._counts[i]), "samples": self._samples}
                for i, (layer, counter) in enumerate(self._slots)]
        return pd.DataFrame(rows, columns=["layer", "counter", "overflows", "samples"])

    def reset_overflows(self) -> None:
        self._counts[:] = 0
        self._samples = 0

    def trace(self, inputs: Any) -> dict[str, np.ndarray]:
        """Every layer's output on `inputs` (a batch), as the firmware holds it (float view of its
        type), keyed by hls4ml layer name, channels-last where hls4ml converted; for profiling and
        for finding where two emulations part."""
        arrays = self.model.validate_inputs(inputs, check_finite=self._check_finite)
        n = len(arrays[0])
        ins = [np.ascontiguousarray(a.transpose(p) if p is not None else a, dtype=np.float32).reshape(n, size)
               for a, p, size in zip(arrays, self._in_perm, self._in_sizes)]
        outs = [np.empty((n, size), np.float32) for size in self._out_sizes]
        size = int(self._lib.yukti_fixed_trace_size())
        trace = np.empty((n, size), np.float32)
        counts = np.zeros(len(self._slots) + 1, np.uint64)
        self._lib.yukti_fixed_trace(_pointers(ins), _pointers(outs), ctypes.c_long(n), ctypes.c_void_p(counts.ctypes.data),
                                    ctypes.c_void_p(trace.ctypes.data))
        result, offset = {}, 0
        for name, shape in self._traced:
            width = int(np.prod(shape))
            result[name] = trace[:, offset:offset + width].reshape(n, *shape)
            offset += width
        return result

    def run_with_overflows(self, inputs: Any) -> tuple[Any, pd.DataFrame]:
        """(outputs, per-layer overflow counts of these inputs alone), whatever count_overflows says."""
        saved, saved_n, counting = self._counts.copy(), self._samples, self._counting
        self.reset_overflows()
        self._counting = True
        try:
            outputs = self(inputs)
            report = self.overflows()
        finally:
            self._counts, self._samples, self._counting = saved + self._counts, saved_n + self._samples, counting
            if not counting:
                self._counts, self._samples = saved, saved_n
        return outputs, report


def _pointers(arrays: list[np.ndarray]) -> Any:
    return (ctypes.c_void_p * len(arrays))(*(a.ctypes.data for a in arrays))


def _generator_hash() -> str:
    """The generator's own code (this package's .py files): any change to it is a new cache key,
    so a stale source is never reused after an edit that forgot to bump _REVISION."""
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.rglob("*.py")):
        digest.update(path.relative_to(Path(__file__).parent).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def _plan(model: Model, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The cache entry holding the generated source and the plan's facts (converted now on a miss)."""
    import hls4ml

    source = choose_source(model, options["source"])
    parts = {"backend": "fixed", "revision": _REVISION, "generator": _generator_hash(), "model": model.hash, "source": source, "options": options,
             "hls4ml": hls4ml.__version__, "qonnx": package_version("qonnx") if source == "onnx" else "",
             **onnx_rewrite_key(source)}

    def build(folder: Path) -> None:
        from yukti.runners.fixed.codegen import generate
        from yukti.runners.fixed.plan import plan_from_hls
        from yukti.runners.hls4ml.build import convert

        started = time.perf_counter()
        hls_options = {**options, "io_type": "io_parallel"}
        with _CONVERTING:  # hls4ml's converters are not known to be thread-safe; the compile after this is
            hls_model = convert(model, frontend_for(source), hls_options, folder / "unwritten")
            plan = plan_from_hls(hls_model)
        text, counters = generate(plan)
        (folder / SOURCE).write_text(text)
        meta = {
            "source": source, "hls4ml": hls4ml.__version__, "convert_s": time.perf_counter() - started,
            "traced": [[layer.name, list(layer.output.shape)] for layer in plan.layers],
            "input_shapes": plan.input_shapes, "output_shapes": plan.output_shapes, "counters": counters,
            "layers": {layer.name: {"class": layer.kind, **{k: str(v) for k, v in layer.types.items()},
                                    **{f"{k}_weights": str(w.type) for k, w in layer.weights.items()}}
                       for layer in plan.layers},
        }
        (folder / PLAN).write_text(json.dumps(meta, indent=1))

    entry = ArtifactCache().get_or_build(parts, build, files=(SOURCE, PLAN))
    return entry, json.loads((entry.path / PLAN).read_text())


def _compile(source: str, model_hash: str) -> Any:
    from yukti.runners.cpp.compiler import compile_library

    return compile_library("", source, list(FLAGS), model_hash=model_hash)
