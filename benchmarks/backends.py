"""asv suite: latency, throughput, accuracy and build cost of every backend, tracked over commits.

Layout (the numpy/scipy way): every class is parameterized over model x backend [x batch_size].
`_EngineRun.setup_cache` runs the Yukti engine (`yukti.benchmark`) once per asv run; every class
inherits that one function, so asv runs it once (it keys the cache by the function's module and
line) and hands its result to each benchmark:

- `Latency`, `NativeLatency`: the engine's per-call percentiles (asv's own samples are means over
  `number` calls, not per-request percentiles) and throughput, as `track_*` with a unit;
- `Accuracy`: losses against the `reference` backend, so that lower is better as asv assumes;
  names and units are yukti.vocabulary's (`accuracy_drop` was tracked as `argmax_disagreement`
  before; yukti.results.from_asv reads the old name as the new one);
- `Build`, `ArtifactSize`: preparation seconds from a cold artifact cache, artifact bytes;
- `Overflows`: values a fixed-point backend's types wrapped or saturated on the evaluation data;
- `Roofline.track_gflops`, `PeakShare.track_pct_of_peak`: the achieved FP32 rate (FLOP per sample
  x samples/s) and its share of the host's FP32 FMA peak (yukti.roofline; skipped for commits or
  models without a FLOP count);
- `Call.time_call`: asv's own timing of one user-facing call `run(x)`;
- `PrepareMemory.peakmem_prepare`: peak RSS of a process that prepares the backend cold;
- `KernelSweep.track_ratio`: cpp p50 / onnxruntime p50 of single dense layers (ONNX Gemm + bias)
  over K x N x batch (benchmarks/kernel_sweep.py). Not a model x backend benchmark: it has its own
  `setup_cache` (its own line, so asv runs it once, apart from the engine run) that sweeps every
  cell, and yukti.results.from_asv leaves it out (no model or backend parameter).

Longer than 400 lines on purpose: asv keys `setup_cache` by module and line, so every benchmark
class must live in this one module to share the one engine run.

A backend that is not registered (older commits), not available here, or refuses the model is
skipped the asv way: `setup` raises NotImplementedError. A backend that fails is a failure (asv
records null), not a skip. Frameworks are imported only inside `setup`, for the combination that
needs them; importing this module costs nothing beyond the standard library.

The parameter lists must not depend on what is installed: asv discovers them once and then runs
each combination by index in the environment of every commit. They can be narrowed for quick
runs through environment variables (asv passes the environment through):
YUKTI_ASV_MODELS, YUKTI_ASV_BACKENDS, YUKTI_ASV_BATCHES (comma-separated), YUKTI_ASV_TIME_BUDGET
(engine seconds per backend x batch). YUKTI_ASV_CACHE is where the zoo models are cached between
runs (default: .asv/yukti-cache beside asv.conf.json). The kernel sweep: YUKTI_ASV_KERNEL_SIZES (K
and N values), YUKTI_ASV_KERNEL_BATCHES, YUKTI_ASV_KERNEL_BUDGET (seconds per backend x batch x cell).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

Record = dict[str, Any]
Cache = dict[str, Any]


def _env_list(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    value = os.environ.get(name, "").strip()
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else default


# jet_dnn_keras: the Keras twin, so the keras backend (which runs only Keras-trained models) is tracked too
MODELS = _env_list("YUKTI_ASV_MODELS", ("jet_dnn", "jet_dnn_keras", "cluster_cnn"))
# Every backend Yukti ships, fixed: a commit that lacks one skips it rather than shifting indices.
BACKENDS = _env_list("YUKTI_ASV_BACKENDS", ("reference", "onnxruntime", "torch", "cpp", "torch_aot", "hls4ml", "keras", "fixed",
                                              "openvino"))
BATCH_SIZES = tuple(int(b) for b in _env_list("YUKTI_ASV_BATCHES", ("1", "1024")))
REFERENCE = "reference"
# The reference evaluator is ONNX's pure-Python interpreter, the accuracy yardstick: it is timed at
# the smallest batch only (a batch of 1024 cluster maps takes seconds per call there).
REFERENCE_BATCHES = BATCH_SIZES[:1]
# Pinned so that editing the suite's code does not hide earlier results (asv would otherwise
# version each benchmark by its source). Bump it when a metric's meaning changes.
SUITE_VERSION = "1"
# The kernel sweep's grid (benchmarks/kernel_sweep.py: SIZES, BATCHES), fixed like the lists above.
KERNEL_SIZES = tuple(int(v) for v in _env_list("YUKTI_ASV_KERNEL_SIZES", ("3", "10", "16", "32", "64", "77", "128", "256")))
KERNEL_BATCHES = tuple(int(b) for b in _env_list("YUKTI_ASV_KERNEL_BATCHES", ("1", "64", "1024")))


def _time_budget_s() -> float:
    return float(os.environ.get("YUKTI_ASV_TIME_BUDGET", "0.5"))


def _conf_dir() -> Path:
    # asv runs each benchmark in a temporary folder and sets ASV_CONF_DIR; fall back to this file.
    return Path(os.environ.get("ASV_CONF_DIR") or Path(__file__).resolve().parents[1])


def zoo_cache_dir() -> Path:
    """Where trained zoo models live across asv runs, so consecutive commits train them once."""
    return Path(os.environ.get("YUKTI_ASV_CACHE") or _conf_dir() / ".asv" / "yukti-cache")


def _plain(value: Any) -> Any:
    """A plain Python value (NaN -> None): the pickled setup_cache result must load without
    pandas or numpy, so that the many small `track_*` processes import nothing heavy."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return str(value)


def _registered_status(names: tuple[str, ...]) -> tuple[list[str], dict[str, str]]:
    """(backends the engine can measure, {backend: why not} for the others)."""
    from yukti import registry

    registered = set(registry.names())
    runnable, refused = [], {}
    for name in names:
        if name not in registered:
            refused[name] = f"backend {name!r} is not registered in this commit's yukti"
            continue
        try:
            info = registry.backend_info(name)
        except Exception as exc:  # older commits raise for broken plugins instead of reporting them
            refused[name] = f"backend {name!r} cannot be loaded: {type(exc).__name__}: {exc}"
            continue
        if info.available:
            runnable.append(name)
        else:
            refused[name] = f"backend {name!r} is not available: {info.reason}"
    return runnable, refused


def _engine_rows(model: Any, backends: list[str], batches: tuple[int, ...], artifacts: Path) -> list[Record]:
    import yukti
    from yukti.engine import TimingPolicy

    # A fresh artifact cache per model: prepare_s is the cold cost (convert, generate, compile),
    # and the artifacts then serve the `Call` benchmarks of this run without recompiling.
    previous = os.environ.get("YUKTI_CACHE_DIR")
    os.environ["YUKTI_CACHE_DIR"] = str(artifacts)
    try:
        # Fewer calls than the CLI's default (100): a full run over one commit must fit in ~15
        # minutes on 2 cores, and slow backends at batch 1024 take milliseconds per call.
        policy = TimingPolicy(time_budget_s=_time_budget_s(), min_calls=50, warmup_calls=5)
        frame = yukti.benchmark(model, backends=backends, batch_sizes=batches, threads=1, policy=policy, store=False)
    finally:
        if previous is None:
            os.environ.pop("YUKTI_CACHE_DIR", None)
        else:
            os.environ["YUKTI_CACHE_DIR"] = previous
    rows = []
    for row in frame.to_dict("records"):
        record = {k: _plain(v) for k, v in row.items() if not isinstance(v, (dict, list))}
        options = row.get("options")
        record["options"] = json.loads(options) if isinstance(options, str) else (options or {})
        rows.append(record)
    return rows


class _EngineRun:
    """Base of every class: the shared engine run and the skip/failure rules."""

    version = SUITE_VERSION
    timeout = 600.0  # per benchmark process: `Call`'s setup imports a framework and loads artifacts

    def setup_cache(self) -> Cache:
        """One engine run over every model x backend x batch size (cwd: asv's cache folder, kept
        until every benchmark of this run has used it)."""
        from yukti import zoo
        from yukti.cache import ArtifactCache

        runnable, refused = _registered_status(BACKENDS)
        zoo_cache = zoo_cache_dir()
        records: dict[tuple[str, str, int], Record] = {}
        artifacts: dict[str, str] = {}
        models: dict[str, str] = {}
        for model_name in MODELS:
            if model_name not in zoo.names():
                models[model_name] = f"model {model_name!r} is not in this commit's zoo"
                continue
            model = zoo.get(model_name, cache=ArtifactCache(zoo_cache))
            folder = Path(tempfile.mkdtemp(prefix=f"artifacts-{model_name}-", dir=os.getcwd()))
            artifacts[model_name] = str(folder)
            rows = []
            if REFERENCE in runnable:
                rows += _engine_rows(model, [REFERENCE], REFERENCE_BATCHES, folder)
            others = [b for b in runnable if b != REFERENCE]
            if others:
                rows += _engine_rows(model, others, BATCH_SIZES, folder)
            for row in rows:
                records[(model_name, row["backend"], int(row["batch_size"]))] = row
        return {"records": records, "refused": refused, "models": models, "artifacts": artifacts,
                "zoo_cache": str(zoo_cache)}

    setup_cache.timeout = 3600  # type: ignore[attr-defined]  # asv reads the timeout from the function

    @staticmethod
    def record(cache: Cache, model: str, backend: str, batch_size: int | None = None) -> Record:
        """The engine's row, or NotImplementedError (asv: skipped) / RuntimeError (asv: failed)."""
        if model in cache["models"]:
            raise NotImplementedError(cache["models"][model])
        if backend in cache["refused"]:
            raise NotImplementedError(cache["refused"][backend])
        if batch_size is None:  # per-backend metrics: any batch's row carries them
            rows = [r for (m, b, _), r in sorted(cache["records"].items(), key=lambda kv: kv[0][2])
                    if m == model and b == backend]
            rows.sort(key=lambda r: r["status"] != "ok")
            row = rows[0] if rows else None
        else:
            row = cache["records"].get((model, backend, batch_size))
        if row is None:
            raise NotImplementedError(f"{backend} is not timed at batch {batch_size} (see REFERENCE_BATCHES)")
        if row["status"] in ("unavailable", "unsupported"):
            raise NotImplementedError(f"{backend} on {model}: {row['status']}: {row.get('error')}")
        if row["status"] != "ok" and row.get("prepare_s") is None:
            raise RuntimeError(f"{backend} on {model} failed in the engine: {row.get('error')}")
        if batch_size is not None and row["status"] != "ok":
            raise RuntimeError(f"{backend} on {model} at batch {batch_size} failed in the engine: {row.get('error')}")
        return row

    @staticmethod
    def value(row: Record, column: str) -> float:
        value = row.get(column)
        if value is None:
            raise RuntimeError(f"the engine reported no {column} for {row.get('backend')} on {row.get('model')}")
        return float(value)


def _vocabulary_units() -> dict[str, str]:
    """Units of yukti.vocabulary's metrics, read from the installed yukti without importing the
    package (numpy, pandas: every benchmark process imports this module). Commits before the
    vocabulary have none: asv records units at discovery, on the newest commit, so the fallback
    units only keep such commits runnable."""
    import importlib.util

    spec = importlib.util.find_spec("yukti")  # a top-level package: found, not imported
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / "vocabulary.py"
        if path.is_file():
            module_spec = importlib.util.spec_from_file_location("_yukti_asv_vocabulary", path)
            module = importlib.util.module_from_spec(module_spec)
            assert module_spec.loader is not None
            sys.modules[module_spec.name] = module  # dataclasses look their module up there
            module_spec.loader.exec_module(module)
            return {column: metric.unit for column, metric in module.METRICS.items()}
    return {}


_UNITS = _vocabulary_units()


def _with_unit(unit: str) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """The benchmark's unit: the vocabulary's for the metric it tracks (the name after `track_`),
    `unit` for commits without a vocabulary or benchmarks that track no metric of it."""
    def mark(function: Callable[..., float]) -> Callable[..., float]:
        function.unit = _UNITS.get(function.__name__.partition("_")[2], unit)  # type: ignore[attr-defined]
        return function

    return mark


class Latency(_EngineRun):
    """Per-call latency percentiles and throughput of the user-facing call, from the engine."""

    params = [list(MODELS), list(BACKENDS), list(BATCH_SIZES)]
    param_names = ["model", "backend", "batch_size"]

    def setup(self, cache: Cache, model: str, backend: str, batch_size: int) -> None:
        self.row = self.record(cache, model, backend, batch_size)

    @_with_unit("µs")
    def track_latency_p50_us(self, cache: Cache, model: str, backend: str, batch_size: int) -> float:
        return self.value(self.row, "latency_p50_us")

    @_with_unit("µs")
    def track_latency_p99_us(self, cache: Cache, model: str, backend: str, batch_size: int) -> float:
        return self.value(self.row, "latency_p99_us")

    # Higher is better here, unlike everything else in the suite: `asv compare` reports a
    # throughput gain as a regression (asv 0.6.6 has no per-benchmark direction). Read its sign.
    @_with_unit("samples/s")
    def track_throughput_per_s(self, cache: Cache, model: str, backend: str, batch_size: int) -> float:
        return self.value(self.row, "throughput_per_s")


class NativeLatency(_EngineRun):
    """Median per-call time measured by the backend itself, without Python (cpp's time_infer)."""

    params = [list(MODELS), list(BACKENDS), list(BATCH_SIZES)]
    param_names = ["model", "backend", "batch_size"]

    def setup(self, cache: Cache, model: str, backend: str, batch_size: int) -> None:
        self.row = self.record(cache, model, backend, batch_size)
        if self.row.get("latency_native_p50_us") is None:
            raise NotImplementedError(f"{backend} does not time itself natively")

    @_with_unit("µs")
    def track_latency_native_p50_us(self, cache: Cache, model: str, backend: str, batch_size: int) -> float:
        return self.value(self.row, "latency_native_p50_us")


class Roofline(_EngineRun):
    """Achieved FP32 rate: the model's FLOP per sample (yukti.roofline) x the engine's samples/s."""

    params = [list(MODELS), list(BACKENDS), list(BATCH_SIZES)]
    param_names = ["model", "backend", "batch_size"]

    def setup(self, cache: Cache, model: str, backend: str, batch_size: int) -> None:
        self.row = self.record(cache, model, backend, batch_size)
        if self.row.get("gflops") is None:
            raise NotImplementedError(f"no FLOP count for {model} (a yukti before yukti.roofline, or a graph it cannot read)")

    # Higher is better, as for throughput: `asv compare` reports a gain as a regression. Read its sign.
    @_with_unit("GFLOP/s")
    def track_gflops(self, cache: Cache, model: str, backend: str, batch_size: int) -> float:
        return self.value(self.row, "gflops")


class PeakShare(_EngineRun):
    """The achieved rate as a share of the host's FP32 FMA peak at one thread (yukti.roofline)."""

    params = [list(MODELS), list(BACKENDS), list(BATCH_SIZES)]
    param_names = ["model", "backend", "batch_size"]

    def setup(self, cache: Cache, model: str, backend: str, batch_size: int) -> None:
        self.row = self.record(cache, model, backend, batch_size)
        if self.row.get("pct_of_peak") is None:
            raise NotImplementedError(f"no share of peak for {model} on {backend}: no FLOP count, or no known clock")

    # Higher is better (see Roofline).
    @_with_unit("%")
    def track_pct_of_peak(self, cache: Cache, model: str, backend: str, batch_size: int) -> float:
        return self.value(self.row, "pct_of_peak")


class Accuracy(_EngineRun):
    """Losses against the reference backend on the model's evaluation set (lower is better)."""

    params = [list(MODELS), list(BACKENDS)]
    param_names = ["model", "backend"]

    def setup(self, cache: Cache, model: str, backend: str) -> None:
        self.row = self.record(cache, model, backend)
        self.reference_auc: float | None = None
        if backend != REFERENCE:
            try:
                self.reference_auc = self.record(cache, model, REFERENCE).get("auc")
            except (NotImplementedError, RuntimeError):
                pass
        else:
            self.reference_auc = self.row.get("auc")

    def derived(self, column: str, score: str) -> float:
        """A loss the engine derives (yukti.vocabulary); 1 - score from engines of commits before it."""
        if self.row.get(column) is not None:
            return float(self.row[column])
        return 1.0 - self.value(self.row, score)

    @_with_unit("fraction")
    def track_accuracy_drop(self, cache: Cache, model: str, backend: str) -> float:
        """1 - argmax agreement with the reference."""
        return self.derived("accuracy_drop", "argmax_agreement")

    @_with_unit("output units")
    def track_max_abs_diff(self, cache: Cache, model: str, backend: str) -> float:
        return self.value(self.row, "max_abs_diff")

    @_with_unit("AUC")
    def track_auc_loss(self, cache: Cache, model: str, backend: str) -> float:
        """1 - ROC AUC of the signal class: the model's physics quality as a loss."""
        return self.derived("auc_loss", "auc")

    @_with_unit("AUC")
    def track_auc_drop(self, cache: Cache, model: str, backend: str) -> float:
        """AUC of the reference minus this backend's (0 for the reference itself)."""
        if self.row.get("auc_drop") is not None:
            return float(self.row["auc_drop"])
        if self.reference_auc is None:
            raise RuntimeError("the reference backend's AUC is missing, so no AUC drop can be computed")
        return float(self.reference_auc) - self.value(self.row, "auc")


class Build(_EngineRun):
    """Preparation (convert/generate/compile) seconds from a cold artifact cache."""

    params = [list(MODELS), list(BACKENDS)]
    param_names = ["model", "backend"]

    def setup(self, cache: Cache, model: str, backend: str) -> None:
        self.row = self.record(cache, model, backend)

    @_with_unit("s")
    def track_prepare_s(self, cache: Cache, model: str, backend: str) -> float:
        return self.value(self.row, "prepare_s")


class ArtifactSize(_EngineRun):
    """Bytes of the prepared artifact (library, package, model file) in the cache."""

    params = [list(MODELS), list(BACKENDS)]
    param_names = ["model", "backend"]

    def setup(self, cache: Cache, model: str, backend: str) -> None:
        self.row = self.record(cache, model, backend)
        if self.row.get("artifact_bytes") is None:
            raise NotImplementedError(f"{backend} keeps no artifact on disk")

    @_with_unit("bytes")
    def track_artifact_bytes(self, cache: Cache, model: str, backend: str) -> float:
        return self.value(self.row, "artifact_bytes")


class Overflows(_EngineRun):
    """Fixed-point backends: values their types wrapped or saturated on the evaluation data (a
    change means the emulated arithmetic changed)."""

    params = [list(MODELS), list(BACKENDS)]
    param_names = ["model", "backend"]

    def setup(self, cache: Cache, model: str, backend: str) -> None:
        self.row = self.record(cache, model, backend)
        if self.row.get("overflows") is None:
            raise NotImplementedError(f"{backend} does not count fixed-point overflows")

    @_with_unit("values")
    def track_overflows(self, cache: Cache, model: str, backend: str) -> float:
        return self.value(self.row, "overflows")


def _load_model(cache: Cache, model: str) -> Any:
    from yukti import zoo
    from yukti.cache import ArtifactCache

    return zoo.get(model, cache=ArtifactCache(cache["zoo_cache"]))


class Call(_EngineRun):
    """asv's timing of one call `run(x)`, validation included, as users call it."""

    params = [list(MODELS), list(BACKENDS), list(BATCH_SIZES)]
    param_names = ["model", "backend", "batch_size"]
    # One round instead of asv's two: each process pays a framework import and an artifact load
    # (seconds), and a full run over one commit must stay within ~15 minutes on 2 cores.
    rounds = 1

    def setup(self, cache: Cache, model: str, backend: str, batch_size: int) -> None:
        row = self.record(cache, model, backend, batch_size)
        from yukti import registry
        from yukti.engine import batch_of, resolve_data

        loaded = _load_model(cache, model)
        # The run's artifacts: the runner loads what setup_cache compiled instead of compiling again.
        os.environ["YUKTI_CACHE_DIR"] = cache["artifacts"][model]
        self.run = registry.runner(backend, loaded, **row["options"])
        _, arrays = resolve_data(loaded, None, 20_000)
        inputs = batch_of(arrays, batch_size)
        self.x = inputs[0] if len(inputs) == 1 else inputs  # the bare array, as the engine calls it
        self.run(self.x)  # first-call costs (lazy initialisation) stay out of the samples

    def time_call(self, cache: Cache, model: str, backend: str, batch_size: int) -> None:
        self.run(self.x)


class PrepareMemory(_EngineRun):
    """Peak resident memory of a fresh process that loads the model and prepares the backend cold.

    asv reports the process's high-water mark: the model loading in `setup` (torch is imported by
    the zoo) is the floor under it. Compilers run as child processes are not counted."""

    params = [list(MODELS), list(BACKENDS)]
    param_names = ["model", "backend"]

    def setup(self, cache: Cache, model: str, backend: str) -> None:
        self.options = self.record(cache, model, backend)["options"]
        self.model = _load_model(cache, model)
        self.folder = tempfile.mkdtemp(prefix="yukti-asv-cold-")
        os.environ["YUKTI_CACHE_DIR"] = self.folder

    def teardown(self, cache: Cache, model: str, backend: str) -> None:
        # asv calls teardown after a skipped setup too, when there is no folder yet.
        if getattr(self, "folder", None):
            shutil.rmtree(self.folder, ignore_errors=True)

    def peakmem_prepare(self, cache: Cache, model: str, backend: str) -> None:
        from yukti import registry

        registry.runner(backend, self.model, **self.options)


# -- the kernel sweep ---------------------------------------------------------------------------

def _kernel_budget_s() -> float:
    return float(os.environ.get("YUKTI_ASV_KERNEL_BUDGET", "0.05"))


def _kernel_sweep_module() -> Any:
    """benchmarks/kernel_sweep.py, loaded from beside this file (asv imports this module by its
    own package name; the test suite by path)."""
    import importlib.util

    path = Path(__file__).resolve().with_name("kernel_sweep.py")
    spec = importlib.util.spec_from_file_location("_yukti_asv_kernel_sweep", path)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


class KernelSweep:
    """cpp p50 / onnxruntime p50 of one dense layer (ONNX Gemm + bias: K inputs, N outputs) at one
    batch size, one thread (below 1: cpp is faster): a kernel regression shows in its own cell.

    The sweep runs once per asv run, in `setup_cache`, one repeat per cell with a short budget
    (YUKTI_ASV_KERNEL_BUDGET), from a fresh artifact cache. Lower is better, as asv assumes."""

    version = SUITE_VERSION
    timeout = 600.0
    params = [list(KERNEL_SIZES), list(KERNEL_SIZES), list(KERNEL_BATCHES)]
    param_names = ["K", "N", "batch"]

    def setup_cache(self) -> Cache:
        sweep = _kernel_sweep_module()
        missing = sweep.unavailable_backends()
        if missing:
            why = "; ".join(f"{backend}: {reason}" for backend, reason in missing.items())
            return {"cells": {}, "refused": f"the kernel sweep needs cpp and onnxruntime ({why})"}
        folder = tempfile.mkdtemp(prefix="artifacts-kernel-sweep-", dir=os.getcwd())
        previous = os.environ.get("YUKTI_CACHE_DIR")
        os.environ["YUKTI_CACHE_DIR"] = folder
        try:
            frame = sweep.run_sweep(KERNEL_SIZES, KERNEL_SIZES, KERNEL_BATCHES, repeats=1,
                                    policy={**sweep.POLICY, "time_budget_s": _kernel_budget_s()})
        finally:
            if previous is None:
                os.environ.pop("YUKTI_CACHE_DIR", None)
            else:
                os.environ["YUKTI_CACHE_DIR"] = previous
        cells = {(int(row["K"]), int(row["N"]), int(row["batch"])):
                 {key: _plain(row.get(key)) for key in ("ratio", "cpp_us", "ort_us", "gflops", "status", "error")}
                 for row in frame.to_dict("records")}
        return {"cells": cells, "refused": None}

    setup_cache.timeout = 3600  # type: ignore[attr-defined]

    def setup(self, cache: Cache, K: int, N: int, batch: int) -> None:  # noqa: N803 - asv passes the parameter names
        if cache["refused"]:
            raise NotImplementedError(cache["refused"])
        cell = cache["cells"].get((K, N, batch))
        if cell is None:
            raise NotImplementedError(f"K={K} N={N} batch={batch} is not in this run's sweep")
        if cell["ratio"] is None:
            raise RuntimeError(f"the sweep measured no ratio at K={K} N={N} batch={batch}: {cell.get('error')}")
        self.cell = cell

    def track_ratio(self, cache: Cache, K: int, N: int, batch: int) -> float:  # noqa: N803
        return float(self.cell["ratio"])

    track_ratio.unit = "cpp/onnxruntime"  # type: ignore[attr-defined]
