"""The measurement engine: every backend on one model, measured the same way.

For each backend: prepare (timed, memory noted), run the whole evaluation set to compare with the
reference backend and the labels in the terms of the model's task (yukti.metrics.infer_task), then
time single calls at each batch size until both a time budget and a minimum call count are met.
One tidy DataFrame comes back (schema: yukti.results; derived metrics: yukti.vocabulary). Every row
carries the model's FLOP per sample and the host's FP32 FMA peak at its threads (yukti.roofline),
from which the achieved GFLOP/s and the share of that peak are derived.

The reference backend (ONNX's Python evaluator) is the baseline, not a contender: its outputs are
computed once per model, inputs and options and kept in the artifact cache (`reference_outputs`),
and it is timed only when asked (`time_reference=True`, or by naming it in `backends`). Untimed,
it still has its rows (status "ok": its AUC is every row's `reference_auc`), without latencies.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import resource
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from yukti import curves, metrics, registry, results, roofline, validation, vocabulary
from yukti.datasets import Dataset
from yukti.errors import InputError, YuktiError
from yukti.model import Model
from yukti.runner import Capability, Runner
from yukti.toolchain import pin_tensorflow_threads
from yukti.progress import Progress

REFERENCE_BACKEND = vocabulary.REFERENCE_BACKEND

# INFO: each backend as it is measured and stored (`yukti bench --verbose` shows these on stderr).
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TimingPolicy:
    """When to stop timing one (backend, batch size): both the budget and the count are met, or
    `max_calls` is reached. Warm-up calls are not counted."""

    time_budget_s: float = 1.0
    min_calls: int = 100
    max_calls: int = 200_000
    warmup_calls: int = 10
    warmup_s: float = 0.05

    def __post_init__(self) -> None:
        # A negative or NaN budget would stop after min_calls with an "ok" row that looks measured.
        checked = {
            "time_budget_s": validation.positive_finite("time_budget_s", self.time_budget_s),
            "min_calls": validation.positive_int("min_calls", self.min_calls),
            "max_calls": validation.positive_int("max_calls", self.max_calls),
            "warmup_calls": validation.non_negative_int("warmup_calls", self.warmup_calls),
            "warmup_s": validation.non_negative_finite("warmup_s", self.warmup_s),
        }
        for name, value in checked.items():  # plain int/float, whatever number type was given
            object.__setattr__(self, name, value)


def resolve_model(model: Any, *, threads: int | None = None) -> Model:
    """A Model, a zoo name, or anything `yukti.load` accepts. With `threads`, a Keras zoo model is
    loaded after TensorFlow's thread pools are sized (they cannot change once TensorFlow starts)."""
    if isinstance(model, Model):
        return model
    if isinstance(model, str):
        from yukti import zoo

        if model in zoo.names():
            if threads is not None and zoo.SPECS[model].framework == "keras":
                pin_tensorflow_threads(threads)
            return zoo.get(model)
        if not model.endswith(".onnx") and "/" not in model:
            raise YuktiError(f"unknown model {model!r}: not a zoo model ({zoo.names()}) and not an .onnx path")
    from yukti.model import load

    return load(model)


def resolve_data(model: Model, data: Any, n_max: int, *, target: str | None = None) -> tuple[Dataset | None, list[np.ndarray]]:
    """The evaluation dataset (None when unlabelled random inputs are used) and its input arrays.
    `data` takes any form yukti.datasets.as_dataset reads (None: the model's own data)."""
    from yukti import datasets

    dataset = datasets.as_dataset(data, model, target=target) if data is not None else model.data
    if dataset is None:
        return None, model.example_inputs(min(n_max, 4096), seed=0)
    subset = dataset.subset(slice(0, n_max))
    if subset.inputs is None and len(model.inputs) != 1:
        raise InputError(f"model {model.name!r} has {len(model.inputs)} inputs {[s.name for s in model.inputs]}; "
                         "give data as {input name: array} or ({input name: array}, y)")
    try:
        arrays = model.validate_inputs(list(subset.inputs) if subset.inputs is not None else subset.X)
    except InputError as exc:
        raise InputError(f"data {subset.label!r} (features {subset.X.shape[1:]}) does not fit model {model.name!r}: {exc}") from None
    return subset, arrays  # unlabelled data (y None): fidelity against the reference only


def reference_outputs(model: Model, arrays: list[np.ndarray], options: dict[str, Any] | None = None) -> np.ndarray:
    """The reference backend's first output on every sample of `arrays`, computed once per model
    hash, inputs (their bytes) and reference options and kept in the artifact cache: ONNX's Python
    evaluator costs milliseconds per sample on a small Conv2D, so a benchmark must not pay it every
    run. A model without an ONNX form (no content hash) is evaluated each time."""
    options = dict(options or {})
    if not model.has_onnx:
        return evaluate(registry.runner(REFERENCE_BACKEND, model, **options), arrays)
    from yukti.cache import ArtifactCache

    inputs = hashlib.sha256()
    for array in arrays:
        inputs.update(f"{array.dtype.str}{array.shape}".encode())
        inputs.update(np.ascontiguousarray(array).tobytes())
    parts = {"model": model.hash, "backend": REFERENCE_BACKEND, "artifact": "outputs", "inputs": inputs.hexdigest(),
             "options": options, "version": registry.backend_info(REFERENCE_BACKEND).version}
    name = "outputs.npy"

    def build(folder: Any) -> None:
        np.save(folder / name, evaluate(registry.runner(REFERENCE_BACKEND, model, **options), arrays), allow_pickle=False)

    entry = ArtifactCache().get_or_build(parts, build, files=(name,), validate=lambda folder: np.load(folder / name, allow_pickle=False))
    return np.load(entry.path / name, allow_pickle=False)


def _batches(arrays: list[np.ndarray], size: int) -> Iterable[list[np.ndarray]]:
    for start in range(0, len(arrays[0]), size):
        yield [a[start:start + size] for a in arrays]


def evaluate(runner: Runner, arrays: list[np.ndarray], chunk: int = 1024) -> np.ndarray:
    """The runner's first output on every sample, computed in chunks."""
    outs = []
    for batch in _batches(arrays, chunk):
        out = runner(batch)
        outs.append(out[0] if isinstance(out, tuple) else out)
    return np.concatenate(outs, axis=0)


def batch_of(arrays: list[np.ndarray], size: int) -> list[np.ndarray]:
    """The first `size` samples, repeating the data when it has fewer."""
    n = len(arrays[0])
    if size <= n:
        return [np.ascontiguousarray(a[:size]) for a in arrays]
    reps = -(-size // n)
    return [np.ascontiguousarray(np.concatenate([a] * reps)[:size]) for a in arrays]


def time_calls(runner: Runner, inputs: list[np.ndarray], policy: TimingPolicy) -> np.ndarray:
    """Per-call wall times (ns) of `runner(x)`: the full user-facing call, validation included.
    A single-input model is called with the bare array, as users call it (not a one-item list)."""
    call = runner.__call__
    if len(inputs) == 1:
        inputs = inputs[0]
    clock = time.perf_counter_ns
    warm_until = clock() + int(policy.warmup_s * 1e9)
    for i in range(10**9):
        call(inputs)
        if i + 1 >= policy.warmup_calls and clock() >= warm_until:
            break
    times = np.empty(policy.max_calls, dtype=np.int64)
    budget_ns = int(policy.time_budget_s * 1e9)
    started = clock()
    n = 0
    while n < policy.max_calls:
        t0 = clock()
        call(inputs)
        t1 = clock()
        times[n] = t1 - t0
        n += 1
        if n >= policy.min_calls and t1 - started >= budget_ns:
            break
    return times[:n]


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _flop_per_sample_or_none(model: Model) -> int | None:
    """The model's FLOP per sample (yukti.roofline), or None when it cannot be counted (no ONNX
    form, a graph the IR refuses): the roofline columns are a convenience, never a reason to fail."""
    if not model.has_onnx:
        return None
    try:
        count = roofline.count_flop(model)
    except Exception as exc:  # noqa: BLE001 - any failure to read the graph only loses gflops
        log.info("no FLOP count for %s: %s: %s", model.name, type(exc).__name__, exc)
        return None
    if count.uncounted:
        log.info("FLOP count of %s is a lower bound: %s not counted", model.name, ", ".join(count.uncounted))
    return count.total


def _peak_gflops_or_none(threads: int, device: object = "cpu") -> float | None:
    """The host's FP32 FMA peak at `threads` (yukti.roofline); None off the CPU or when the clock is unknown."""
    if not str(device or "cpu").lower().startswith("cpu"):
        return None  # a GPU row's rate is not a share of the host CPU's peak
    return roofline.host_peak_gflops(threads).gflops


def _options_for(cls: type[Runner], threads: int, extra: dict[str, Any]) -> dict[str, Any]:
    """What `prepare` is called with: the reuse key (`Runner.resolve_options`, the one the chooser
    looks up) plus the common options (check_finite) `extra` sets."""
    return {**cls.resolve_options(extra, threads=threads), **{k: v for k, v in extra.items() if k in cls.common_options}}


def benchmark(
    model: Any,
    backends: Sequence[str] | None = None,
    batch_sizes: Sequence[int] = (1, 64, 1024),
    data: Any = None,
    threads: int = 1,
    *,
    options: dict[str, dict[str, Any]] | None = None,
    signal: int | str | None = None,
    policy: TimingPolicy | None = None,
    max_eval_samples: int = 20_000,
    store: bool | str = True,
    progress: bool | Callable[[float, str], None] = False,
    task: str | None = None,
    time_reference: bool | None = None,
    target: str | None = None,
) -> pd.DataFrame:
    """Measure `model` on `backends` (default: every registered one) and return the results.

    Unavailable or unsupporting backends get a row with `status` and the reason; a backend that
    fails is recorded as `status="error"` and does not stop the others. With `store` (True: the
    default store, or a folder), the run's file is rewritten after each backend, so a run killed
    midway keeps every backend that finished; so is its curves file (yukti.curves: what the
    dashboard's Fidelity page draws). `progress`: a progress bar, or a function called with the
    fraction done and what is being measured.

    `task` ("classification", "regression", "anomaly"; default: declared by the model or inferred,
    yukti.metrics.infer_task) chooses the fidelity and physics metrics. `time_reference`: time the
    reference backend too (default: only when `backends` names it); untimed, its rows carry its
    accuracy numbers and no latencies.

    `data`: a Dataset, a dataset name, a table file, (X, y), X, {input name: array} (multi-input),
    a DataFrame, torch tensors (yukti.datasets.ACCEPTED_DATA); `target` names the label column of a
    table file or DataFrame. Without labels only fidelity to the reference is measured.
    """
    threads = validation.positive_int("threads", threads)
    max_eval_samples = validation.positive_int("max_eval_samples", max_eval_samples)
    if isinstance(batch_sizes, (str, bytes)) or not isinstance(batch_sizes, Iterable):
        raise InputError(f"batch_sizes must be a sequence of integers >= 1; got {batch_sizes!r}")
    batch_sizes = [validation.positive_int("batch_sizes item", b) for b in batch_sizes]
    if not batch_sizes:
        raise InputError("batch_sizes must name at least one batch size (integers >= 1); got none")
    if policy is not None and not isinstance(policy, TimingPolicy):
        raise InputError(f"policy must be a yukti.TimingPolicy; got {type(policy).__name__}")
    model = resolve_model(model, threads=threads)
    task = metrics.check_task(task) if task is not None else metrics.infer_task(model)
    if time_reference is None:
        time_reference = bool(backends) and REFERENCE_BACKEND in backends
    policy = policy or TimingPolicy()
    options = options or {}
    names = list(backends) if backends else registry.names()
    for name in names:
        registry.backend_info(name)  # unknown names fail before any measuring starts; broken plugins become "unavailable"
    stray = sorted(set(options) - set(names) - {REFERENCE_BACKEND})
    if stray:  # a typo or a backend left out would otherwise measure with the defaults, silently
        raise InputError(f"options given for backend(s) {stray} that this run does not measure; it measures {names}")
    dataset, eval_arrays = resolve_data(model, data, max_eval_samples, target=target)
    if dataset is not None and signal is not None:
        dataset = dataset.with_signal(signal)

    from yukti import environment

    env = environment.fingerprint()
    run_id = uuid.uuid4().hex[:12]
    common = {
        "run_id": run_id, "model": model.name, "model_hash": model.hash if model.has_onnx else None,
        "threads": threads, "dataset": dataset.label if dataset else "random inputs",
        "dataset_synthetic": bool(dataset.synthetic) if dataset else True, "n_samples": len(eval_arrays[0]),
        "signal_class": dataset.signal_name if dataset is not None and dataset.class_names else None, "task": task,
        "timestamp": pd.Timestamp.now(tz="UTC"), **env,
        # roofline facts: gflops and pct_of_peak derive from these (yukti.vocabulary)
        "flop_per_sample": _flop_per_sample_or_none(model), "peak_gflops": _peak_gflops_or_none(threads),
    }

    run_file = results.new_run_path(None if store is True else store) if store else None
    progress_bar = Progress(progress, total=len(names) * (1 + len(batch_sizes)) + 1)
    rows: list[dict[str, Any]] = []
    with progress_bar:
        progress_bar.step(f"reference outputs ({REFERENCE_BACKEND})")
        baseline = _Baseline(task, eval_arrays, reference_outputs(model, eval_arrays, options.get(REFERENCE_BACKEND)), dataset,
                             reconstructs=model.reconstructs)
        common["reference_auc"] = baseline.quality.get("auc")
        for name in names:
            if name == REFERENCE_BACKEND and not time_reference:
                progress_bar.skip(1 + len(batch_sizes))
                rows.extend(_untimed_reference(batch_sizes, options.get(name, {}), baseline))
            else:
                rows.extend(_measure_backend(name, model, batch_sizes, threads, options.get(name, {}), policy,
                                             baseline, progress_bar))
            log.info("measured %s (run %s)", name, run_id)
            if run_file is not None:
                # The whole run so far, atomically: a kill loses at most the backend in flight.
                results.write_run(_run_frame(common, rows), run_file)
                curves.store(baseline.curves, run_file, run_id=run_id, model=model.name)
                log.info("stored %s (run %s, %d rows) in %s", name, run_id, len(rows), run_file)
    return results.with_derived(_run_frame(common, rows))


def _run_frame(common: dict[str, Any], rows: list[dict[str, Any]]) -> pd.DataFrame:
    return results.conform(pd.DataFrame([{**common, **row} for row in rows]))


@dataclass
class _Baseline:
    """What every backend is compared with: the evaluation inputs, the reference's outputs on them,
    the labelled data (or None) and the model's task."""

    task: str
    arrays: list[np.ndarray]
    outputs: np.ndarray
    dataset: Dataset | None
    reconstructs: tuple[int, int] | None = None  # Model.reconstructs
    curves: list[pd.DataFrame] = field(default_factory=list)  # per backend, as yukti.curves stores them

    def __post_init__(self) -> None:
        try:
            # anomaly: the score compares the outputs with the inputs (the part the model reconstructs)
            self.targets = metrics.reconstruction_target(self, self.arrays[0]) if self.task == vocabulary.ANOMALY else None
            self.quality = self.compare(self.outputs)
        except ValueError as exc:  # e.g. task "anomaly" on a model whose outputs are not shaped like its inputs
            raise InputError(f"the {self.task} metrics do not fit this model: {exc}") from None

    def compare(self, outputs: np.ndarray) -> dict[str, Any]:
        """Fidelity to the reference and physics metrics of `outputs`, in the task's terms."""
        inputs = self.targets
        quality: dict[str, Any] = dict(metrics.fidelity(outputs, self.outputs, self.task, inputs=inputs))
        if self.dataset is not None and self.dataset.y is not None:
            quality.update(metrics.physics(outputs, self.dataset.y, self.dataset.signal_class, task=self.task, inputs=inputs))
        return quality

    def keep_curves(self, backend: str, options: dict[str, Any], outputs: np.ndarray) -> None:
        """Keep the curves of `outputs` for the store; failing here loses the curves, never the backend."""
        labelled = self.dataset is not None and self.dataset.y is not None
        try:
            self.curves.append(curves.of_backend(
                backend, options, self.task, outputs, self.outputs, labels=self.dataset.y if labelled else None,
                signal_class=self.dataset.signal_class if labelled else None,
                inputs=self.targets))
        except Exception:  # noqa: BLE001 - a convenience for the dashboard, not a measurement
            log.warning("no fidelity curves for %s", backend, exc_info=True)


def _untimed_reference(batch_sizes: list[int], extra: dict[str, Any], baseline: _Baseline) -> list[dict[str, Any]]:
    """The reference's rows when it is not timed: its accuracy numbers, no latencies."""
    info = registry.backend_info(REFERENCE_BACKEND)
    options = {**registry.runner_class(REFERENCE_BACKEND).default_options, **extra}
    base = {"backend": REFERENCE_BACKEND, "backend_version": info.version, "options": options, "device": "cpu",
            **baseline.quality, "status": "ok", "error": None}
    baseline.keep_curves(REFERENCE_BACKEND, options, baseline.outputs)
    return [{**base, "batch_size": b} for b in batch_sizes]


def _measure_backend(name: str, model: Model, batch_sizes: list[int], threads: int, extra: dict[str, Any],
                     policy: TimingPolicy, baseline: _Baseline, progress: "Progress") -> list[dict[str, Any]]:
    info = registry.backend_info(name)
    if not info.available:
        base = {"backend": name, "options": dict(extra), "device": extra.get("device", "cpu")}
        progress.skip(1 + len(batch_sizes))
        return [{**base, "batch_size": b, "status": "unavailable", "error": info.reason} for b in batch_sizes]
    cls = registry.runner_class(name)
    opts = _options_for(cls, threads, extra)
    base = {"backend": name, "options": opts, "device": opts.get("device", "cpu")}
    if base["device"] != "cpu":
        base["peak_gflops"] = _peak_gflops_or_none(threads, base["device"])
    skipped = lambda status, why: [{**base, "batch_size": b, "status": status, "error": why} for b in batch_sizes]  # noqa: E731
    support = cls.supports(model)
    if not support:
        progress.skip(1 + len(batch_sizes))
        return skipped("unsupported", support.describe())
    base["backend_version"] = info.version
    try:
        progress.step(f"{name}: prepare")
        gc.collect()
        rss_before = _rss_mb()
        runner = cls().prepare(model, **opts)
        base["options"] = runner.info["options"]  # resolved: defaults included, for reproducibility
        quality = {"prepare_s": runner.info["prepare_s"], "artifact_bytes": runner.info.get("artifact_bytes"),
                   "rss_prepare_mb": _rss_mb() - rss_before}
        if "threads_effective" in runner.info:  # e.g. TensorFlow's pools, fixed when it started
            quality["threads"] = int(runner.info["threads_effective"])
            quality["peak_gflops"] = _peak_gflops_or_none(quality["threads"], base["device"])
        # the reference's outputs on these inputs are the baseline's (cached): no second slow pass
        if name == REFERENCE_BACKEND:
            outputs = baseline.outputs
        elif cls.has(Capability.OVERFLOWS):  # the same outputs, with what each layer's types wrapped or saturated
            outputs, report = runner.run_with_overflows(baseline.arrays)
            outputs = outputs[0] if isinstance(outputs, tuple) else outputs
            per_layer = report.groupby("layer", sort=False)["overflows"].sum()
            quality["overflows"] = int(per_layer.sum())
            quality["overflow_layers"] = json.dumps({str(k): int(v) for k, v in per_layer.items() if v})
        else:
            outputs = evaluate(runner, baseline.arrays)
        quality.update(baseline.compare(outputs))
        baseline.keep_curves(name, base["options"], outputs)
    except Exception as exc:  # one failing backend must not lose the others' results
        progress.skip(len(batch_sizes))
        return skipped("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    rows = []
    for batch in batch_sizes:
        progress.step(f"{name}: batch {batch}")
        inputs = batch_of(baseline.arrays, batch)
        try:
            call_ns = time_calls(runner, inputs, policy)
            timing = metrics.latency_stats(call_ns, batch)
            if cls.has(Capability.NATIVE_TIMING):
                # about half the Python loop's budget again, spent natively (at least 1000 calls)
                n_native = int(np.clip(policy.time_budget_s * 1e9 / 2 / max(float(np.median(call_ns)), 1.0), 1000, 10**6))
                timing["latency_native_p50_us"] = float(np.median(runner.time_native(inputs, n_native))) / 1e3
            rows.append({**base, **quality, **timing, "batch_size": batch, "status": "ok", "error": None,
                         "peak_rss_mb": _peak_rss_mb()})
        except Exception as exc:
            rows.append({**base, **quality, "batch_size": batch, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
    return rows
