"""`HLS4MLRunner`: the Runner contract around hls4ml's emulation library.

`supports()` refuses, without converting, what hls4ml cannot take (non-float or dynamic shapes,
layers without a converter, kernels over the practical unroll limit); `prepare` builds or reuses
the library (build.py), loads it with ctypes and runs the self-check (diagnose.py); a call is one
ctypes call per batch, or per chunk when `threads` > 1.
"""

from __future__ import annotations

import ctypes
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from yukti.runners.hls4ml.build import compiler, library
from yukti.runners.hls4ml.config import IO_TYPES, conversion_options
from yukti.runners.hls4ml.diagnose import self_check
from yukti.runners.hls4ml.frontend import ATTENTION, frontend_for, pick_source
from yukti.errors import UnsupportedModelError
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Runner, Support, package_version

# Practical size: Vivado HLS refuses to unroll more than 4096 multiplications of one layer kernel
# (maintainers in fastmachinelearning/hls4ml#1013: "with Vivado HLS the limit is 4,096"). A layer
# kernel above that cannot be built fully parallel, and its emulation is also slow to compile
# (cluster_cnn, whose Dense 256x32 has 8192 weights: 25 s compile, 2.6 ms per sample). supports()
# sees no options, so the limit is counted at reuse factor 1, the default.
MAX_KERNEL_WEIGHTS = 4096
MIN_CHUNK = 64  # samples per thread below which splitting costs more than it saves


class HLS4MLRunner(Runner):
    name = "hls4ml"
    description = "hls4ml fixed-point firmware, C++ emulation (Vivado/Vitis backend compile(), batched)"
    packages = ("hls4ml",)
    fixed_point = True
    thread_safe = True  # calls are serialized by a lock: the firmware's lookup tables are lazily built statics
    options = {
        **conversion_options(),
        "io_type": Option("io_parallel", choices=IO_TYPES),
        # io_stream firmware keeps static line buffers: its calls are serialized whatever this says.
        "threads": Option(1, type=int, minimum=1, artifact=False,
                          doc="threads emulating chunks of a batch at once (io_parallel); the same library serves every value"),
    }

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:
        if not compiler():
            return False, "hls4ml emulation compiles C++ with g++, which is not on PATH"
        return True, ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        bad_dtype = [s.describe() for s in model.inputs if np.dtype(s.dtype).kind != "f"]
        if bad_dtype:
            return Support(False, reason=f"hls4ml emulation takes float inputs; got {', '.join(bad_dtype)}")
        dynamic = [s.describe() for s in model.inputs + model.outputs if any(d is None for d in s.sample_shape)]
        if dynamic:
            return Support(False, reason=f"hls4ml needs static shapes besides the batch dimension; got {', '.join(dynamic)}")
        source, _ = pick_source(model, "auto")
        if source == "onnx" and not model.has_onnx:
            return Support(False, reason=f"no Keras model, torch module or ONNX form: {model._onnx_error}")
        frontend = frontend_for(source)
        attention = frontend.attention(model)
        if attention:  # before the layer check: replacing the other layers would not get past it
            return Support(False, attention, f"{ATTENTION}: {frontend.attention_detail()}", by_design=True)
        try:
            missing = frontend.unsupported_layers(model)
        except UnsupportedModelError as exc:
            return Support(False, reason=str(exc))
        if missing:
            kinds = sorted({op for op, _ in missing})
            reason = f"hls4ml has no converter for {source} layer type(s) {', '.join(kinds)}"
            if source == "torch" and model.has_onnx:  # pick_source tried the ONNX form too
                reason += _onnx_too(model)
            return Support(False, missing, reason)
        big = [(op, name, n) for op, name, n in frontend.kernel_sizes(model) if n > MAX_KERNEL_WEIGHTS]
        if big:
            op, name, n = max(big, key=lambda item: item[2])
            return Support(
                False, tuple((o, nm) for o, nm, _ in big),
                f"over hls4ml's practical size: {op} {name!r} has {n} weights, more than the {MAX_KERNEL_WEIGHTS} "
                "multiplications Vivado HLS unrolls in one layer at reuse factor 1 (hls4ml#1013)",
                by_design=True,
            )
        return Support(True)

    # -- prepare -------------------------------------------------------------------------------
    def _prepare(self, model: Model, **options: Any) -> dict[str, Any]:
        threads = options.pop("threads")  # not part of the artifact
        source, source_why = pick_source(model, options["source"])
        frontend = frontend_for(source)
        entry, meta = library(model, frontend, options)
        path = entry.path / meta["library"]
        self._lib = ctypes.CDLL(str(path))
        self._batch = self._lib.yukti_batch_float
        self._batch.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long]
        self._batch.restype = None
        self._lock = threading.Lock()
        # The firmware fills its activation lookup tables on the first call (static, unguarded);
        # after that first call, io_parallel firmware has no mutable state left: chunks may run at
        # once (ctypes releases the GIL during the call). Until then, and for io_stream, a lock.
        self._warm = False
        self._parallel = options["io_type"] == "io_parallel"
        self._threads = int(threads)
        self._pool = ThreadPoolExecutor(self._threads, thread_name_prefix="yukti-hls4ml") if self._threads > 1 and self._parallel else None
        self._in_sizes = [int(np.prod(s)) for s in meta["input_shapes"]]
        self._out_sizes = [int(np.prod(s)) for s in meta["output_shapes"]]
        self._in_perm = _input_permutations(model, meta["input_shapes"])
        self._out_shapes = [(-1, *spec.sample_shape) for spec in model.outputs]
        if [int(np.prod(s.sample_shape)) for s in model.outputs] != self._out_sizes:
            raise UnsupportedModelError(
                f"hls4ml's outputs {meta['output_shapes']} do not match model {model.name!r}'s outputs "
                f"{[s.describe() for s in model.outputs]}")
        check = self_check(self._run, model, frontend, options)
        import hls4ml

        return {
            "artifact_path": str(entry.path),
            "artifact_bytes": entry.bytes,
            "library": str(path),
            "library_bytes": path.stat().st_size,
            "cache_hit": entry.hit,
            # converting and compiling, by this process or, on a cache hit, by the one that built it
            "build_s": entry.manifest["build_s"],
            "compile_s": meta["compile_s"],  # build_lib.sh's share of build_s
            "convert_s": meta["convert_s"],
            "versions": {"hls4ml": hls4ml.__version__, "compiler": compiler(), **({"qonnx": package_version("qonnx")}
                                                                                   if frontend.source == "onnx" else {})},
            "source": frontend.source,
            "source_why": source_why,  # source="auto" may take a torch module's ONNX form (frontend.pick_source)
            "precision": options["precision"],
            "layer_precisions": meta["layers"],
            "reuse_factor": options["reuse_factor"],
            "strategy": options["strategy"],
            "io_type": options["io_type"],
            "hls4ml": hls4ml.__version__,
            "compiler": compiler(),
            "self_check": check,
            "threads": self._threads,
            "thread_safe_how": ("lock-free after the first call (lookup tables filled once)" if self._parallel
                                else "calls serialized by a lock (io_stream firmware keeps static buffers)"),
        }

    # -- run -------------------------------------------------------------------------------------
    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        n = len(arrays[0])
        ins = []
        for array, perm, size in zip(arrays, self._in_perm, self._in_sizes):
            if perm is not None:  # the firmware takes channels-last
                array = array.transpose(perm)
            ins.append(np.ascontiguousarray(array, dtype=np.float32).reshape(n, size))
        outs = [np.empty((n, size), np.float32) for size in self._out_sizes]
        in_ptrs = (ctypes.c_void_p * len(ins))(*(a.ctypes.data for a in ins))
        out_ptrs = (ctypes.c_void_p * len(outs))(*(o.ctypes.data for o in outs))
        if not (self._warm and self._parallel):
            with self._lock:
                self._batch(in_ptrs, out_ptrs, n)
                self._warm = True
        elif self._pool is not None and n >= 2 * MIN_CHUNK:
            bounds = np.linspace(0, n, min(self._threads, n // MIN_CHUNK) + 1).astype(int)

            def chunk(start: int, stop: int) -> None:
                ip = (ctypes.c_void_p * len(ins))(*(a[start:stop].ctypes.data for a in ins))
                op = (ctypes.c_void_p * len(outs))(*(o[start:stop].ctypes.data for o in outs))
                self._batch(ip, op, stop - start)

            for future in [self._pool.submit(chunk, a, b) for a, b in zip(bounds[:-1], bounds[1:])]:
                future.result()
        else:
            self._batch(in_ptrs, out_ptrs, n)
        return [o.reshape(shape) for o, shape in zip(outs, self._out_shapes)]


def _onnx_too(model: Model) -> str:
    """Why the torch module's ONNX form does not convert either, for the refusal."""
    try:
        missing = frontend_for("onnx").unsupported_layers(model)
    except UnsupportedModelError as exc:
        return f"; nor its ONNX form: {exc}"
    kinds = sorted({op for op, _ in missing})
    return f"; nor its ONNX form, for onnx layer type(s) {', '.join(kinds)}" if kinds else ""


def _input_permutations(model: Model, hls_shapes: list[list[int]]) -> list[tuple[int, ...] | None]:
    """None where the firmware takes the model's layout; the NCHW -> NHWC permutation where it
    takes channels-last (qonnx/hls4ml conversions of spatial inputs)."""
    perms: list[tuple[int, ...] | None] = []
    for spec, hls_shape in zip(model.inputs, hls_shapes):
        sample = list(spec.sample_shape)
        if int(np.prod(sample)) != int(np.prod(hls_shape)):
            raise UnsupportedModelError(f"hls4ml's input shape {hls_shape} does not match {spec.describe()}")
        channels_last = sample[1:] + sample[:1]
        if list(hls_shape) == sample or len(sample) < 2 or sample[0] == 1:
            perms.append(None)  # same layout, or one channel: the memory order is identical
        elif list(hls_shape) == channels_last:
            perms.append((0, *range(2, len(sample) + 1), 1))
        else:
            raise UnsupportedModelError(f"hls4ml's input shape {hls_shape} is neither {sample} nor channels-last {channels_last}")
    return perms
