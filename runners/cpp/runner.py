"""`cpp`: the network as generated C++ with its weights baked in, compiled and loaded with ctypes.

ONNX -> IR (runners/cpp/ir.py) -> C++ (codegen.py + one emitter per operator in ops/) -> a shared
library in the artifact cache (compiler.py) -> ctypes. Inputs are validated in Python before any
pointer crosses; NaN/inf are caught by the generated code itself (cheaper than a numpy pass).
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping
from typing import Any

import numpy as np

from yukti.errors import InputError, UnsupportedModelError, YuktiError
from yukti.model import Model
from yukti.options import Option, string_list
from yukti.runner import Capability, Runner, Support
from yukti.toolchain import compiler_version, find_compiler


class CppRunner(Runner):
    name = "cpp"
    description = "generated C++ (weights baked in), compiled with the system compiler, loaded with ctypes"
    options = {
        "march": Option("native", type=str, nullable=True, doc="-march=...; None for a portable build"),
        "fast_math": Option(False, type=bool, doc="-ffast-math: faster exp/reductions, results may differ in the last bits"),
        "opt_level": Option("-O3", choices=("-O0", "-O1", "-O2", "-O3", "-Os", "-Oz", "-Og", "-Ofast")),
        "extra_flags": Option((), check=string_list, doc="more compiler flags, appended"),
        "sanitize": Option(False, type=bool, doc="-fsanitize=address,undefined (load with libasan preloaded)"),
        "use_bridge": Option(True, type=bool, artifact=False,
                             doc="call through the compiled CPython bridge (about 1 us) instead of ctypes (about 7 us)"),
        # passed at call time (infer_threads), so every thread count shares one compiled library
        "threads": Option(1, type=int, minimum=1, artifact=False,
                          doc="threads a batch of two tiles or more is split over: the caller and a pool of workers "
                              "inside the generated library, started once"),
    }
    capabilities = Capability.NATIVE_TIMING | Capability.EXPORT | Capability.COLUMNS
    native_finite_check = True
    # once prepared: (dtype, sample shape, output sample shape, infer address, threads, bridge.call1,
    # output shape at batch 1)
    _fast: tuple | None = None

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:  # no Python package: a C++ compiler is the requirement
        return (True, "") if find_compiler() else (False, "no C++ compiler found (set CXX or install g++)")

    @classmethod
    def version(cls) -> str:
        cxx = find_compiler()
        return compiler_version(cxx) if cxx else ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        from yukti.runners.cpp import codegen
        from yukti.runners.cpp.ops import supported_ops

        support = Support.from_ops(model, supported_ops(), "cpp")
        if not support:
            return support
        try:  # text generation only (milliseconds, kept for prepare): catches attributes and shapes emitters refuse
            codegen.for_model(model)
        except UnsupportedModelError as exc:
            return Support(False, reason=str(exc))
        return Support(True)

    def _prepare(self, model: Model, *, march: str | None, fast_math: bool, opt_level: str, extra_flags: tuple[str, ...], sanitize: bool,
                 use_bridge: bool, threads: int) -> dict[str, Any]:
        from yukti.runners.cpp import codegen
        from yukti.runners.cpp.compiler import compile_library, flags_for

        from yukti.runners.cpp import isa as isa_module

        # The vector ISA this march (and any -m flag) targets, from the compiler: it sets the kernels'
        # width and blocking. For the default march it is the code supports() generated a moment ago.
        target = isa_module.detect(march, extra_flags)
        source = codegen.for_model(model, isa=target)
        flags = flags_for(opt_level=opt_level, march=march, fast_math=fast_math, sanitize=sanitize, extra=extra_flags)
        # compile_library verified model.so against its checksum (or built and loaded it) first.
        entry = compile_library(source.header, source.body, flags, model_hash=model.hash)
        try:
            library = ctypes.CDLL(str(entry.path / "model.so"))
        except OSError as exc:  # removed by another process's `yukti cache clear` since the check
            raise YuktiError(f"could not load {entry.path / 'model.so'} for model {model.name!r}: {exc}; prepare again to rebuild it") from None
        pointers, i64 = ctypes.POINTER(ctypes.c_void_p), ctypes.c_int64
        # the *_threads entry points take the thread count per call: the library is shared by every
        # runner of this model in the process, whatever its `threads`
        for symbol in ("infer_threads", "infer_checked_threads", "infer_columns_threads", "infer_columns_checked_threads"):
            if hasattr(library, symbol):
                getattr(library, symbol).argtypes, getattr(library, symbol).restype = [pointers, pointers, i64, i64], i64
        library.time_infer.argtypes = [pointers, pointers, i64, i64, i64, ctypes.POINTER(i64), i64]
        library.time_infer.restype = None
        library.prepare_threads.argtypes, library.prepare_threads.restype = [i64], i64
        self._library, self._source, self._threads = library, source, int(threads)
        # the workers start now, not in the first timed call; the system may refuse some
        threads_effective = int(library.prepare_threads(self._threads))
        from yukti.runners.cpp import bridge

        self._bridge = bridge.load() if use_bridge else None
        address = lambda symbol: ctypes.cast(getattr(library, symbol), ctypes.c_void_p).value  # noqa: E731
        self._infer_address, self._checked_address = address("infer_threads"), address("infer_checked_threads")
        self._columns_addresses = {s: address(s) for s in ("infer_columns_threads", "infer_columns_checked_threads")
                                   if hasattr(library, s)}
        self._fast = None
        if self._bridge is not None and len(model.inputs) == 1 and len(model.outputs) == 1 and model.inputs[0].shape[0] is None:
            address_used = self._checked_address if self._check_finite else self._infer_address
            out_shape = tuple(source.output_shapes[0])
            # everything the hot path reads, in one tuple: attribute lookups and building the
            # output's shape cost as much as the network at batch 1
            self._fast = (np.dtype(np.float32), tuple(model.inputs[0].shape[1:]), out_shape, address_used, self._threads,
                          self._bridge.call1, (1, *out_shape))
        self._in_array_type = ctypes.c_void_p * source.n_inputs
        self._out_array_type = ctypes.c_void_p * source.n_outputs
        # from the IR, not the model's declared outputs: a file may leave an output dim unnamed
        self._out_shapes = list(source.output_shapes)
        return {
            "artifact_path": str(entry.path), "artifact_bytes": (entry.path / "model.so").stat().st_size,
            # the compiler's seconds, by this process or, on a cache hit, by the one that built it
            "build_s": entry.manifest["build_s"], "cache_hit": entry.hit, "flags": flags, "tile": source.tile,
            "isa": target.name, "vector_lanes": target.lanes,
            "arena_bytes": source.arena_floats * 4, "threads": self._threads,
            **({"threads_effective": threads_effective} if threads_effective != self._threads else {}),
            "call_path": "bridge" if self._bridge is not None else f"ctypes ({bridge.error() or 'bridge disabled'})",
        }

    def __call__(self, inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        # Hot path (batch-1 trigger loops): one float32 array of the right sample shape goes
        # straight to the bridge (`is`: the native float32 dtype is a singleton; a byte-swapped one
        # is not and takes the slow path); the bridge refuses a non-contiguous buffer, which then
        # takes the full validation of Runner.__call__ (it copies), as does anything else.
        fast = self._fast
        if fast is not None and type(inputs) is np.ndarray and inputs.dtype is fast[0] and inputs.shape[1:] == fast[1]:
            batch = inputs.shape[0]
            if batch > 0:
                output = np.empty(fast[6] if batch == 1 else (batch, *fast[2]), fast[0])
                try:
                    status = fast[5](fast[3], inputs, output, batch, fast[4])
                except (BufferError, ValueError):  # numpy: "ndarray is not C-contiguous"
                    return super().__call__(inputs)
                if status != 0:
                    raise self._non_finite_input([inputs], status)
                return output
        return super().__call__(inputs)

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        batch = arrays[0].shape[0]
        outputs = [np.empty((batch, *shape), np.float32) for shape in self._out_shapes]
        if self._bridge is not None:
            address = self._checked_address if self._check_finite else self._infer_address
            status = self._bridge.call(address, tuple(arrays), tuple(outputs), batch, self._threads)
            if status != 0:
                raise self._non_finite_input(arrays, status)
            return outputs
        ins = self._in_array_type(*[a.ctypes.data for a in arrays])
        outs = self._out_array_type(*[o.ctypes.data for o in outputs])
        infer = self._library.infer_checked_threads if self._check_finite else self._library.infer_threads
        status = infer(ins, outs, batch, self._threads)
        if status != 0:
            raise self._non_finite_input(arrays, status)
        return outputs

    def _non_finite_input(self, arrays: list[np.ndarray], status: int) -> InputError:
        """The error for a call the compiled check refused (the tiles holding a NaN/inf were not
        computed: the outputs are partly uninitialised memory and must never be returned)."""
        try:
            self.model.validate_inputs(arrays, check_finite=True)  # raises the InputError naming the value
        except InputError as exc:
            return exc
        # Only reached when the two checks disagree (another thread changed the array in between,
        # or a view the Python check reads differently): still no garbage out.
        return InputError(
            f"model {self.model.name!r}: the compiled check found a non-finite input value at flat index {int(status) - 1} "
            "of an input; expected finite numbers (pass check_finite=False to the runner to let NaN/inf through)"
        )

    # -- beyond the contract -------------------------------------------------------------------
    @classmethod
    def export(cls, model: Model, directory: Any, *, name: str | None = None, march: str | None = "native") -> list[Any]:
        """Standalone sources + CMakeLists.txt + example main.cpp (see runners/cpp/export.py); `name`
        (default: the model's) names the files, the CMake target and the symbols; `march` the
        target the kernels are blocked for and built with (None: the compiler's default target)."""
        from yukti.runners.cpp.export import export

        support = cls.supports(model)
        if not support:
            raise UnsupportedModelError(f"backend 'cpp' cannot export model {model.name!r}: {support.describe()}")
        return export(model, directory, name=name, march=march)

    def time_native(self, inputs: list[np.ndarray], n_calls: int, *, min_group_ns: int = 2000) -> np.ndarray:
        """Per-call nanoseconds measured natively (no Python in the loop), one value per timed group.

        Calls shorter than `min_group_ns` are timed in groups of back-to-back calls (reported per
        call), because reading the clock costs about as much as a batch-1 call of a small network."""
        arrays = self.model.validate_inputs(inputs)
        batch = arrays[0].shape[0]
        outputs = [np.empty((batch, *shape), np.float32) for shape in self._out_shapes]
        ins = self._in_array_type(*[a.ctypes.data for a in arrays])
        outs = self._out_array_type(*[o.ctypes.data for o in outputs])

        def groups(n_groups: int, reps: int) -> np.ndarray:
            ns = np.empty(n_groups, np.int64)
            self._library.time_infer(ins, outs, batch, n_groups, reps, ns.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), self._threads)
            return ns

        one_call = max(float(np.median(groups(64, 1))), 1.0)  # also warms caches and branch predictors
        reps = max(1, int(np.ceil(min_group_ns / one_call)))
        n_groups = max(1, n_calls // reps)
        return groups(n_groups, reps) / reps

    def _convert_column(self, column: Any, index: int) -> np.ndarray:
        from yukti.model import TensorSpec, _to_dtype, _to_numpy

        spec = TensorSpec(f"{self.model.inputs[0].name}[column {index}]", (None,), np.dtype(np.float32))
        array = _to_numpy(column, spec)
        if array.ndim != 1:
            raise InputError(f"column {index} of {self.model.inputs[0].name!r}: expected a 1-D array; got shape {array.shape}")
        return np.ascontiguousarray(_to_dtype(array, spec))

    def columns(self, columns: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run on column (SoA) data: F one-dimensional arrays (a sequence, a dict in feature order,
        a numpy structured array or a pandas DataFrame), read in place with one pointer per column."""
        if self.model is None:
            raise YuktiError(f"runner {self.name!r} is not prepared; call prepare(model) or use yukti.runner(...)")
        if not hasattr(self._library, "infer_columns_threads"):
            raise InputError(f"model {self.model.name!r} does not take column input (it needs one 2-D input)")
        spec = self.model.inputs[0]
        features = spec.shape[1]
        if isinstance(columns, np.ndarray) and columns.dtype.names:
            arrays = [columns[name] for name in columns.dtype.names]
        elif hasattr(columns, "columns") and hasattr(columns, "to_numpy"):  # pandas DataFrame
            arrays = [columns[c].to_numpy() for c in columns.columns]
        elif isinstance(columns, Mapping):
            arrays = list(columns.values())
        else:
            try:
                arrays = list(columns) if not isinstance(columns, (str, bytes)) else None
            except TypeError:  # not iterable: a number, None, a 0-d array or tensor
                arrays = None
            if arrays is None:
                raise InputError(f"input {spec.describe()} takes {features} columns (a sequence, dict, structured array or "
                                 f"DataFrame of 1-D arrays); got a {type(columns).__name__}")
        if len(arrays) != features:
            raise InputError(f"input {spec.describe()} takes {features} columns; got {len(arrays)}")
        checked = []
        for index, column in enumerate(arrays):
            if not (type(column) is np.ndarray and column.dtype == np.float32 and column.ndim == 1 and column.flags.c_contiguous):
                column = self._convert_column(column, index)
            batch = len(checked[0]) if checked else len(column)
            if len(column) != batch or batch == 0:
                raise InputError(f"column {index} of {spec.name!r}: expected a non-empty 1-D array as long as column 0 "
                                 f"({batch}); got shape {column.shape}")
            checked.append(column)
        outputs = [np.empty((batch, *shape), np.float32) for shape in self._out_shapes]
        symbol = "infer_columns_checked_threads" if self._check_finite else "infer_columns_threads"
        if self._bridge is not None:
            status = self._bridge.call(self._columns_addresses[symbol], tuple(checked), tuple(outputs), batch, self._threads)
        else:
            column_pointers = (ctypes.c_void_p * features)(*[c.ctypes.data for c in checked])
            status = getattr(self._library, symbol)(column_pointers, self._out_array_type(*[o.ctypes.data for o in outputs]), batch,
                                                    self._threads)
        if status != 0:
            feature, row = divmod(int(status) - 1, batch)
            raise InputError(f"column {feature} of {spec.name!r} holds a non-finite value ({checked[feature][row]}) at row {row}")
        return outputs[0] if len(outputs) == 1 else tuple(outputs)
