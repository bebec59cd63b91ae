"""`hls4ml`: bit-accurate C++ emulation of the FPGA firmware hls4ml generates (L1 trigger style).

Converts the model's original Keras model, original torch module, or ONNX form (cleaned by qonnx
first) into an hls4ml project, compiles the project's C++ emulation library (g++ only, no HLS tools)
into the shared artifact cache, and calls it through ctypes. Outputs are fixed point on purpose
(`fixed_point = True`): they approximate the float network, and the engine's argmax agreement,
AUC and efficiency-at-background columns say what the approximation costs.

Two things hls4ml does not do by itself:
- batches: `ModelGraph.predict()` loops over samples in Python (~125 us each); we append a
  `yukti_batch_float` loop to the generated bridge so a whole batch is one ctypes call;
- a sanity check: hls4ml converts some configurations without complaint into constant garbage
  (`granularity="name"` on a softmax MLP). `prepare` compares the emulation with the float model
  on a sample and, on gross disagreement, traces every layer and names the first one that departs.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import functools
import io
import json
import re
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from yukti.cache import ArtifactCache
from yukti.errors import UnsupportedModelError, YuktiError
from yukti.model import Model
from yukti.runner import Runner, Support, import_status, package_version
from yukti.safe_names import C_IDENTIFIER, sanitized_onnx

# Practical size: Vivado HLS refuses to unroll more than 4096 multiplications of one layer kernel
# (maintainers in fastmachinelearning/hls4ml#1013: "with Vivado HLS the limit is 4,096"). A layer
# kernel above that cannot be built fully parallel, and its emulation is also slow to compile
# (cluster_cnn, whose Dense 256x32 has 8192 weights: 25 s compile, 2.6 ms per sample). supports()
# sees no options, so the limit is counted at reuse factor 1, the default.
MAX_KERNEL_WEIGHTS = 4096
# Self-check: below this argmax agreement with the float model on the sample, prepare fails.
MIN_AGREEMENT = 0.9
SELF_CHECK_SAMPLES = 2000
# A traced layer "departs" when its mean absolute error exceeds this fraction of the float
# activations' mean magnitude (ap_fixed<16,6> on a healthy net stays near 1e-2).
DEPARTURE = 0.1
PROJECT = "myproject"
MIN_CHUNK = 64  # samples per thread below which splitting costs more than it saves
_RUNNER_REVISION = 5  # bump when the generated artifact changes: part of the cache key

_PRECISION = re.compile(r"^(ap_)?(u?fixed|u?int)<[^<>]+>$")
_STRATEGIES = ("Latency", "Resource")
_IO_TYPES = ("io_parallel", "io_stream")
_GRANULARITIES = ("model", "type", "name")
_SOURCES = ("auto", "keras", "torch", "onnx")
_HLS_BACKENDS = ("Vivado", "Vitis")
# Containers and no-op modules that carry no computation of their own in a torch module tree.
_TORCH_TRANSPARENT = {"Sequential", "ModuleList", "ModuleDict", "Identity", "Dropout"}
_KERAS_TRANSPARENT = {"InputLayer", "Dropout", "Functional", "Sequential"}


class EmulationMismatchError(YuktiError):
    """hls4ml's emulation disagrees grossly with the float model it was converted from."""


@contextlib.contextmanager
def _quiet() -> Iterator[io.StringIO]:
    """hls4ml prints its topology and progress on stdout; keep it for error messages only."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        yield buffer


@functools.lru_cache(maxsize=1)
def _compiler() -> str:
    """The C++ compiler build_lib.sh uses (g++), by its version line: part of the cache key."""
    try:
        out = subprocess.run(["g++", "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.returncode == 0 and out.stdout else ""
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.lru_cache(maxsize=1)
def _supported_layers() -> dict[str, set[str]]:
    import hls4ml.converters as conv

    return {"keras": set(conv.get_supported_keras_layers()), "torch": set(conv.get_supported_pytorch_layers()),
            "onnx": set(conv.get_supported_onnx_layers())}


def _choose_source(model: Model, source: str) -> str:
    if source == "auto":
        if model.keras_model is not None:
            return "keras"
        return "torch" if model.torch_module is not None else "onnx"
    present = {"keras": model.keras_model is not None, "torch": model.torch_module is not None, "onnx": model.has_onnx}
    if not present[source]:
        have = [s for s, ok in present.items() if ok]
        raise ValueError(f"hls4ml option source={source!r}: model {model.name!r} has no {source} form; it has {have}")
    return source


_CLEAN_ONNX: dict[str, Any] = {}


def _clean_onnx(model: Model) -> Any:
    """qonnx clean-up hls4ml needs before convert_from_onnx_model: static shapes (batch 1), folded
    constants, channels-last layout, Gemm rewritten as MatMul + Add (hls4ml has no Gemm).
    Memoized per model hash: supports() and prepare() both need it and it takes ~0.1 s."""
    if model.hash in _CLEAN_ONNX:
        return _CLEAN_ONNX[model.hash]
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    # qonnx and hls4ml turn node and tensor names into C++: derived identifiers only (safe_names)
    wrapper = cleanup_model(ModelWrapper(sanitized_onnx(model.onnx)), override_inpsize=1)
    wrapper = wrapper.transform(ConvertToChannelsLastAndClean())
    wrapper = wrapper.transform(GemmToMatMul())
    wrapper = cleanup_model(wrapper)
    _CLEAN_ONNX[model.hash] = wrapper
    return wrapper


def _kernel_sizes_onnx(model: Model) -> list[tuple[str, str, int]]:
    inits = {init.name: int(np.prod(init.dims)) for init in model.onnx.graph.initializer}
    sizes = []
    for i, node in enumerate(model.onnx.graph.node):
        if node.op_type in ("Gemm", "MatMul", "Conv", "ConvTranspose"):
            size = max((inits.get(name, 0) for name in node.input[:2]), default=0)
            sizes.append((node.op_type, node.name or f"#{i}", size))
    return sizes


def _kernel_sizes_keras(keras_model: Any) -> list[tuple[str, str, int]]:
    sizes = []
    for layer in keras_model.layers:
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            sizes.append((type(layer).__name__, layer.name, int(np.prod(tuple(kernel.shape)))))
    return sizes


def _layer_types(hls_model: Any) -> dict[str, dict[str, str]]:
    """Per-layer precisions as hls4ml will write them (result, weight, bias, accum, tables...)."""
    layers = {}
    for layer in hls_model.get_layers():
        entry = {"class": layer.class_name}
        for type_name, named in layer.types.items():
            entry[type_name.removesuffix("_t")] = str(named.precision)
        if layer.get_attr("reuse_factor") is not None:
            entry["reuse_factor"] = int(layer.get_attr("reuse_factor"))
        layers[layer.name] = entry
    return layers


class HLS4MLRunner(Runner):
    name = "hls4ml"
    description = "hls4ml fixed-point firmware, C++ emulation (Vivado/Vitis backend compile(), batched)"
    fixed_point = True
    thread_safe = True  # calls are serialized by a lock: the firmware's lookup tables are lazily built statics
    default_options = {
        "precision": "ap_fixed<16,6>",  # model-wide default type
        "layer_precision": None,  # {hls4ml layer name: "ap_fixed<..>" or {"result": .., "weight": .., "accum": ..}}
        "reuse_factor": 1,
        "strategy": "Latency",  # Latency | Resource
        "io_type": "io_parallel",  # io_parallel | io_stream
        # "model": one precision for all. "name"/"type" let hls4ml infer per-layer types ("auto"),
        # which turned a softmax MLP into one constant output here; kept for experiments.
        "granularity": "model",
        # hls4ml's stable softmax holds x_max - x in a wrapping type of range [0, 32) for
        # ap_fixed<16,6> (a logit spread over 32 turns a confident answer into nonsense: max abs 0.54
        # on jet_dnn), and indexes its 1024-entry 1/sum table over [-128, 128) (steps of 0.25 for a
        # sum in [1, n]). True saturates the first and fits the second to the sum's range
        # (see _tune_softmax); False keeps hls4ml's defaults.
        "tune_softmax": True,
        "source": "auto",  # auto (keras, else torch, else onnx) | keras | torch | onnx
        "hls_backend": "Vivado",  # Vivado | Vitis (same C++ emulation; differs for synthesis)
        # Threads that emulate chunks of a batch at once (io_parallel only; io_stream firmware keeps
        # static line buffers). Not part of the artifact: the same library serves every value.
        "threads": 1,
    }

    @classmethod
    def available(cls) -> tuple[bool, str]:
        ok, reason = import_status("hls4ml")
        if not ok:
            return ok, reason
        if not _compiler():
            return False, "hls4ml emulation compiles C++ with g++, which is not on PATH"
        return True, ""

    @classmethod
    def version(cls) -> str:
        return package_version("hls4ml")

    @classmethod
    def supports(cls, model: Model) -> Support:
        bad_dtype = [s.describe() for s in model.inputs if np.dtype(s.dtype).kind != "f"]
        if bad_dtype:
            return Support(False, reason=f"hls4ml emulation takes float inputs; got {', '.join(bad_dtype)}")
        dynamic = [s.describe() for s in model.inputs + model.outputs if any(d is None for d in s.sample_shape)]
        if dynamic:
            return Support(False, reason=f"hls4ml needs static shapes besides the batch dimension; got {', '.join(dynamic)}")
        try:
            source = _choose_source(model, "auto")
        except ValueError as exc:
            return Support(False, reason=str(exc))
        if source == "onnx" and not model.has_onnx:
            return Support(False, reason=f"no Keras model, torch module or ONNX form: {model._onnx_error}")
        known = _supported_layers()
        if source == "keras":
            missing = tuple((type(l).__name__, l.name) for l in model.keras_model.layers
                            if type(l).__name__ not in known["keras"] | _KERAS_TRANSPARENT)
            sizes = _kernel_sizes_keras(model.keras_model)
        elif source == "torch":
            missing = tuple((type(m).__name__, name) for name, m in model.torch_module.named_modules()
                            if name and not list(m.children()) and type(m).__name__ not in known["torch"] | _TORCH_TRANSPARENT)
            sizes = _kernel_sizes_onnx(model)
        else:
            try:
                with _quiet():
                    cleaned = _clean_onnx(model)
            except Exception as exc:
                return Support(False, reason=f"qonnx could not clean the ONNX graph for hls4ml ({type(exc).__name__}: {exc})")
            missing = tuple((n.op_type, n.name) for n in cleaned.graph.node if n.op_type not in known["onnx"])
            sizes = _kernel_sizes_onnx(model)
        if missing:
            kinds = sorted({op for op, _ in missing})
            return Support(False, missing, f"hls4ml has no converter for {source} layer type(s) {', '.join(kinds)}")
        big = [(op, name, n) for op, name, n in sizes if n > MAX_KERNEL_WEIGHTS]
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
        threads = options.pop("threads")
        if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
            raise ValueError(f"hls4ml option threads must be a positive integer; got {threads!r}")
        _validate_options(options)
        source = _choose_source(model, options["source"])
        import hls4ml

        parts = {
            "backend": self.name, "revision": _RUNNER_REVISION, "model": model.hash, "source": source,
            "options": options, "hls4ml": hls4ml.__version__, "compiler": _compiler(),
            "qonnx": package_version("qonnx") if source == "onnx" else "",
        }

        def loads(tmp: Path) -> None:  # committed only once the emulation library loads
            from yukti.cache import check_shared_library

            check_shared_library(tmp / json.loads((tmp / "yukti_hls.json").read_text())["library"])

        # The cache checks every file against its checksum before the library is loaded here.
        entry = ArtifactCache().get_or_build(parts, lambda tmp: _build(model, source, options, tmp),
                                             files=("yukti_hls.json",), validate=loads)
        meta = json.loads((entry.path / "yukti_hls.json").read_text())
        library = entry.path / meta["library"]
        self._lib = ctypes.CDLL(str(library))
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
        self.model = model  # _self_check calls the runner before the base class sets it
        check = self._self_check(model, source, options)
        return {
            "artifact_path": str(entry.path),
            "artifact_bytes": entry.bytes,
            "library": str(library),
            "library_bytes": library.stat().st_size,
            "cache_hit": entry.hit,
            "compile_s": meta["compile_s"],
            "convert_s": meta["convert_s"],
            "source": source,
            "precision": options["precision"],
            "layer_precisions": meta["layers"],
            "reuse_factor": options["reuse_factor"],
            "strategy": options["strategy"],
            "io_type": options["io_type"],
            "hls4ml": hls4ml.__version__,
            "compiler": _compiler(),
            "self_check": check,
            "threads": self._threads,
            "thread_safe_how": ("lock-free after the first call (lookup tables filled once)" if self._parallel
                                else "calls serialized by a lock (io_stream firmware keeps static buffers)"),
        }

    def _self_check(self, model: Model, source: str, options: dict[str, Any]) -> dict[str, Any]:
        from yukti.metrics import fidelity

        x = _check_sample(model)
        emulated = self._run(x)
        reference = _float_reference(model, x)
        result: dict[str, Any] = {"n_samples": int(len(x[0]))}
        problems = []
        for index, (out, ref) in enumerate(zip(emulated, reference)):
            fid = fidelity(out, ref)
            result[f"argmax_agreement_{index}" if index else "argmax_agreement"] = fid["argmax_agreement"]
            result[f"max_abs_diff_{index}" if index else "max_abs_diff"] = fid["max_abs_diff"]
            flat_out, flat_ref = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
            constant = bool(np.all(flat_out.std(axis=0) == 0) and np.any(flat_ref.std(axis=0) > 0))
            if constant:
                problems.append(f"output {index} is the same for every sample ({np.round(flat_out[0], 4).tolist()})")
            elif fid["argmax_agreement"] < MIN_AGREEMENT:
                problems.append(f"output {index} argmax agreement {fid['argmax_agreement']:.3f} < {MIN_AGREEMENT}")
        if problems:
            where = _diagnose(model, source, options, [a[:200] for a in x])
            raise EmulationMismatchError(
                f"hls4ml emulation of {model.name!r} disagrees with the float model on {len(x[0])} samples: "
                f"{'; '.join(problems)}. {where} Options were {options}; try granularity='model', a wider "
                "precision, or layer_precision={layer: 'ap_fixed<W,I>'} for that layer")
        return result

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


# -- building -------------------------------------------------------------------------------------


def _validate_options(options: dict[str, Any]) -> None:
    def precision_ok(value: Any) -> bool:
        return isinstance(value, str) and bool(_PRECISION.match(value.replace(" ", "")))

    if not precision_ok(options["precision"]):
        raise ValueError(f"hls4ml option precision must be like 'ap_fixed<16,6>' or 'ap_int<8>'; got {options['precision']!r}")
    for key, allowed in (("strategy", _STRATEGIES), ("io_type", _IO_TYPES), ("granularity", _GRANULARITIES),
                         ("source", _SOURCES), ("hls_backend", _HLS_BACKENDS)):
        if options[key] not in allowed:
            raise ValueError(f"hls4ml option {key} must be one of {list(allowed)}; got {options[key]!r}")
    rf = options["reuse_factor"]
    if not isinstance(rf, int) or isinstance(rf, bool) or rf < 1:
        raise ValueError(f"hls4ml option reuse_factor must be an integer >= 1; got {rf!r}")
    overrides = options["layer_precision"]
    if overrides is not None:
        if not isinstance(overrides, dict):
            raise ValueError(f"hls4ml option layer_precision must be a dict {{layer name: precision}}; got {type(overrides).__name__}")
        for layer, value in overrides.items():
            values = value.values() if isinstance(value, dict) else [value]
            if not all(precision_ok(v) for v in values):
                raise ValueError(
                    f"hls4ml layer_precision[{layer!r}] must be a precision like 'ap_fixed<16,6>' or a dict "
                    f"{{'result'|'weight'|'bias'|'accum': precision}}; got {value!r}")


def _hls_config(model: Model, source: str, options: dict[str, Any], cleaned: Any) -> dict[str, Any]:
    import hls4ml

    common = {"granularity": options["granularity"], "backend": options["hls_backend"],
              "default_precision": options["precision"], "default_reuse_factor": options["reuse_factor"]}
    if source == "keras":
        config = hls4ml.utils.config_from_keras_model(model.keras_model, **common)
    elif source == "torch":
        config = hls4ml.utils.config_from_pytorch_model(model.torch_module, tuple(model.inputs[0].sample_shape) if len(model.inputs) == 1
                                                       else [tuple(s.sample_shape) for s in model.inputs], **common)
    else:
        config = hls4ml.utils.config_from_onnx_model(cleaned, **common)
    config["Model"]["Strategy"] = options["strategy"]
    for layer, value in (options["layer_precision"] or {}).items():
        config.setdefault("LayerName", {}).setdefault(layer, {})["Precision"] = dict(value) if isinstance(value, dict) else value
    return config


def _convert(model: Model, source: str, options: dict[str, Any], output_dir: Path) -> Any:
    """The hls4ml ModelGraph of `model` (not written, not compiled). Conversion failures become
    UnsupportedModelError with hls4ml's message."""
    import hls4ml

    cleaned = _clean_onnx(model) if source == "onnx" else None
    kwargs = {"output_dir": str(output_dir), "project_name": PROJECT, "backend": options["hls_backend"],
              "io_type": options["io_type"],
              # weights compiled into the library: with .txt weights the emulation reads them at run
              # time from an absolute path baked in at compile time, which the cache's rename breaks
              "write_weights_txt": False}
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            config = _hls_config(model, source, options, cleaned)
            if source == "keras":
                hls_model = hls4ml.converters.convert_from_keras_model(model.keras_model, hls_config=config, **kwargs)
            elif source == "torch":
                hls_model = hls4ml.converters.convert_from_pytorch_model(model.torch_module, hls_config=config, **kwargs)
            else:
                hls_model = hls4ml.converters.convert_from_onnx_model(cleaned, hls_config=config, **kwargs)
    except Exception as exc:
        log = buffer.getvalue().strip().splitlines()[-3:]
        last = f" (last hls4ml output: {' | '.join(log)})" if log else ""
        raise UnsupportedModelError(f"hls4ml could not convert model {model.name!r} from {source}: {type(exc).__name__}: {exc}{last}") from exc
    names = {layer.name for layer in hls_model.get_layers()}
    # hls4ml writes layer and tensor names into C++ as they are. ONNX names were sanitized above; a
    # Keras or torch model's own names must already be C identifiers (checked, never escaped).
    written = [*names, *(v.name for v in hls_model.get_input_variables()), *(v.name for v in hls_model.get_output_variables()),
               *(name for layer in hls_model.get_layers() for name in layer.outputs)]
    unsafe = sorted({name for name in written if not C_IDENTIFIER.fullmatch(str(name))})
    if unsafe:
        raise UnsupportedModelError(f"hls4ml writes layer and tensor names into C++; these are not C identifiers "
                                    f"([A-Za-z_][A-Za-z0-9_]*): {[str(n)[:80] for n in unsafe[:5]]}; rename the layers")
    unknown = sorted(set(options["layer_precision"] or {}) - names)
    if unknown:
        raise ValueError(f"hls4ml layer_precision names unknown layer(s) {unknown}; the layers are {sorted(names)}")
    if options["tune_softmax"]:
        _tune_softmax(hls_model)
    return hls_model


def _tune_softmax(hls_model: Any) -> None:
    """hls4ml's stable softmax stores x_max - x_i in `inp_norm_t`, by default the input type made
    unsigned (ap_ufixed<15,5> for ap_fixed<16,6>: range [0, 32)) with WRAP overflow: a class 40
    below the winner wraps to 8 below it and gets a large probability. A saturating type of the
    same width sends it to exp(-32) ~ 0 instead. The sum of exponentials (in [1, n]) addresses the
    1/sum table through the top 10 bits of `inv_inp_t`; hls4ml's default ap_fixed<18,8> spends
    them on [-128, 128), so we give it just the integer bits the sum needs."""
    for layer in hls_model.get_layers():
        if layer.class_name != "Softmax" or layer.get_attr("implementation", "stable") != "stable":
            continue
        if layer.get_attr("inp_norm_t") is not None:
            continue  # set by the user or the frontend (HGQ): leave it
        source = layer.get_input_variable().type.precision
        if not hasattr(source, "saturation_mode"):
            continue  # not fixed point
        # copies of the backend's own type objects, which know how to write themselves as C++
        precision = copy.copy(source)
        precision.width, precision.integer = source.width - int(source.signed), source.integer - int(source.signed)
        precision.signed = False
        precision.saturation_mode = "SAT"
        named = copy.copy(layer.get_attr("exp_table_t"))
        named.name = f"{layer.name}_inp_norm_t"
        named.precision = precision
        layer.set_attr("inp_norm_t", named)
        inv = layer.get_attr("inv_inp_t")
        if inv is not None and hasattr(inv.precision, "saturation_mode"):
            n_slice = int(np.prod(layer.get_input_variable().shape[-1:]))
            narrowed = copy.copy(inv.precision)
            narrowed.integer = int(np.ceil(np.log2(max(n_slice, 2)))) + 2  # sign + room for the sum
            inv.precision = narrowed
        # the layer's C++ config struct was rendered at conversion; render it again with the new type
        from hls4ml.backends.vivado.passes.core_templates import SoftmaxConfigTemplate

        SoftmaxConfigTemplate().transform(hls_model, layer)
        if named.name not in layer.get_attr("config_cpp", ""):
            raise YuktiError(f"tune_softmax: hls4ml {hls_model.config.backend.name} did not take the saturating "
                             f"type for softmax layer {layer.name!r}; pass tune_softmax=False")


def _batch_source(hls_model: Any) -> str:
    """A C loop over the batch around hls4ml's own per-sample bridge wrapper `myproject_float`,
    so a batch costs one ctypes call and gives exactly what predict() gives sample by sample."""
    ins = [v.size() for v in hls_model.get_input_variables()]
    outs = [v.size() for v in hls_model.get_output_variables()]
    args = [f"inputs[{i}] + i * {size}L" for i, size in enumerate(ins)] + [f"outputs[{j}] + i * {size}L" for j, size in enumerate(outs)]
    return (
        "\n// yukti: batched entry point (one ctypes call per batch instead of one per sample)\n"
        'extern "C" void yukti_batch_float(float *const *inputs, float *const *outputs, long n) {\n'
        "    for (long i = 0; i < n; i++) {\n"
        f"        {PROJECT}_float({', '.join(args)});\n"
        "    }\n}\n"
    )


def _build(model: Model, source: str, options: dict[str, Any], out: Path) -> None:
    started = time.perf_counter()
    project = out / "hls_project"
    hls_model = _convert(model, source, options, project)
    convert_s = time.perf_counter() - started
    with _quiet():
        hls_model.write()
    bridge = project / f"{PROJECT}_bridge.cpp"
    text = bridge.read_text()
    # the bridge ends with its include guard; the loop goes inside it, after the wrappers
    head, sep, tail = text.rpartition("#endif")
    bridge.write_text(head + _batch_source(hls_model) + "\n" + sep + tail)
    started = time.perf_counter()
    run = subprocess.run(["bash", "build_lib.sh"], cwd=project, capture_output=True, text=True)
    compile_s = time.perf_counter() - started
    if run.returncode != 0:
        raise YuktiError(f"compiling hls4ml's emulation library for {model.name!r} failed (g++):\n{(run.stdout + run.stderr)[-4000:]}")
    libraries = sorted((project / "firmware").glob(f"{PROJECT}-*.so"))
    if len(libraries) != 1:
        raise YuktiError(f"hls4ml's build_lib.sh left {len(libraries)} libraries in {project / 'firmware'}; expected one")
    meta = {
        "library": str(libraries[0].relative_to(out)),
        "input_shapes": [list(v.shape) for v in hls_model.get_input_variables()],
        "output_shapes": [list(v.shape) for v in hls_model.get_output_variables()],
        "layers": _layer_types(hls_model),
        "convert_s": convert_s,
        "compile_s": compile_s,
    }
    (out / "yukti_hls.json").write_text(json.dumps(meta, indent=1))


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


# -- self-check and diagnosis ---------------------------------------------------------------------


def _check_sample(model: Model) -> list[np.ndarray]:
    if model.data is not None and len(model.inputs) == 1 and len(model.data.X):
        x = np.ascontiguousarray(model.data.X[:SELF_CHECK_SAMPLES], dtype=np.float32)
        if x.shape[1:] == tuple(model.inputs[0].sample_shape):
            return [x]
    # no matching data: standard-normal inputs (the scale standardized features have)
    return model.example_inputs(batch_size=SELF_CHECK_SAMPLES, seed=0)


def _float_reference(model: Model, x: list[np.ndarray]) -> list[np.ndarray]:
    """The float network's outputs: the `reference` backend on the original model when there is one."""
    from yukti import registry

    source = "original" if model.torch_module is not None or model.keras_model is not None else "onnx"
    return registry.runner("reference", model, source=source).run_validated(x)


def _float_activations(model: Model, source: str, hls_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
    """Float activations keyed by hls4ml layer name, for the layers we can match."""
    layer_names = [layer.name for layer in hls_model.get_layers()]
    if source == "torch":
        import torch

        captured: dict[str, np.ndarray] = {}
        hooks = []
        for name, module in model.torch_module.named_modules():
            if name and not list(module.children()):
                key = re.sub(r"\W", "_", name)
                for candidate in (key, f"_{key}"):  # hls4ml (torch.fx) prefixes names starting with a digit
                    if candidate in layer_names:
                        hooks.append(module.register_forward_hook(
                            lambda _m, _i, out, k=candidate: captured.__setitem__(k, out.detach().numpy().copy())))
        try:
            with torch.inference_mode():
                model.torch_module(torch.from_numpy(x))
        finally:
            for hook in hooks:
                hook.remove()
        return captured
    if source == "keras":
        from hls4ml.model.profiling import get_ymodel_keras

        with _quiet():
            return {k: np.asarray(v) for k, v in get_ymodel_keras(model.keras_model, x).items() if k in layer_names}
    # onnx: evaluate the cleaned graph (batch 1) sample by sample, asking for each layer's tensor
    from onnx.reference import ReferenceEvaluator

    cleaned = _clean_onnx(model)
    tensor_of = {layer.name: layer.outputs[0] for layer in hls_model.get_layers() if layer.outputs}
    known = {v.name for v in cleaned.graph.value_info} | {o.name for o in cleaned.graph.output}
    wanted = {name: tensor for name, tensor in tensor_of.items() if tensor in known}
    evaluator = ReferenceEvaluator(cleaned.model)
    input_name = cleaned.graph.input[0].name
    shape = cleaned.get_tensor_shape(input_name)
    rows = [evaluator.run(list(wanted.values()), {input_name: x[i].reshape(shape)}) for i in range(len(x))]
    return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(wanted)}


def _diagnose(model: Model, source: str, options: dict[str, Any], x: list[np.ndarray]) -> str:
    """Recompile with every layer traced and return a sentence naming the first layer whose
    fixed-point output departs from the float activation."""
    with tempfile.TemporaryDirectory(prefix="yukti-hls4ml-trace-") as tmp:
        try:
            hls_model = _convert(model, source, options, Path(tmp) / "prj")
            for layer in hls_model.get_layers():
                layer.set_attr("trace", True)
            sample = np.ascontiguousarray(x[0], dtype=np.float32)
            with _quiet():
                _, traces = hls_model.trace(sample)
            floats = _float_activations(model, source, hls_model, sample)
        except Exception as exc:  # the diagnosis must not hide the mismatch it explains
            return f"(tracing the layers to find where it departs failed: {type(exc).__name__}: {exc})"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    errors: list[tuple[str, str, float]] = []
    for layer in hls_model.get_layers():
        if layer.name not in traces or layer.name not in floats:
            continue
        traced, ref = traces[layer.name].reshape(len(sample), -1), floats[layer.name]
        if ref.ndim > 2 and ref.reshape(len(ref), -1).shape == traced.shape and ref.shape[1:] != traces[layer.name].shape[1:]:
            ref = np.moveaxis(ref, 1, -1)  # channels-first float against channels-last firmware
        ref = ref.reshape(len(ref), -1)
        if ref.shape != traced.shape:
            continue
        error = float(np.abs(traced - ref).mean() / (np.abs(ref).mean() + 1e-3))
        errors.append((layer.name, layer.class_name, error))
    if not errors:
        return "No traced layer could be matched to a float activation to say where it departs."
    listing = ", ".join(f"{n} ({c}) {e:.3f}" for n, c, e in errors)
    for name, cls, error in errors:
        if error > DEPARTURE:
            return (f"The first layer that departs from the float activations is {name!r} ({cls}): mean relative "
                    f"error {error:.3f} > {DEPARTURE}. Per-layer relative error: {listing}.")
    name, cls, error = max(errors, key=lambda e: e[2])
    return (f"No layer departs by more than {DEPARTURE} on its own; the largest error is at {name!r} ({cls}) "
            f"{error:.3f}. Per-layer relative error: {listing}.")
