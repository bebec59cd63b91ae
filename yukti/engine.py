"""The measurement engine: every backend on one model, measured the same way.

For each backend: prepare (timed, memory noted), run the whole evaluation set to compare with the
reference backend and the labels, then time single calls at each batch size until both a time
budget and a minimum call count are met. One tidy DataFrame comes back (schema: yukti.results).
"""

from __future__ import annotations

import gc
import logging
import resource
import time
import traceback
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from yukti import metrics, registry, results, validation
from yukti.datasets import Dataset
from yukti.errors import InputError, YuktiError
from yukti.model import Model
from yukti.runner import Runner
from yukti.toolchain import pin_tensorflow_threads

REFERENCE_BACKEND = "reference"

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


def resolve_data(model: Model, data: Any, n_max: int) -> tuple[Dataset | None, list[np.ndarray]]:
    """The evaluation dataset (None when unlabelled random inputs are used) and its input arrays."""
    if isinstance(data, str):
        from yukti import datasets

        data = datasets.load(data)
    if data is None:
        data = model.data
    if data is None:
        return None, model.example_inputs(min(n_max, 4096), seed=0)
    if len(model.inputs) != 1:
        raise InputError(f"a Dataset feeds single-input models; model {model.name!r} has {len(model.inputs)} inputs")
    subset = data.subset(slice(0, n_max))
    try:
        arrays = model.validate_inputs(subset.X)
    except InputError as exc:
        raise InputError(f"dataset {data.label!r} (features {subset.X.shape[1:]}) does not fit model {model.name!r}: {exc}") from None
    return subset, arrays


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


def _options_for(cls: type[Runner], threads: int, extra: dict[str, Any]) -> dict[str, Any]:
    options = dict(extra)
    if "threads" in cls.default_options:
        options.setdefault("threads", threads)
    return options


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
    progress: bool = False,
) -> pd.DataFrame:
    """Measure `model` on `backends` (default: every registered one) and return the results.

    Unavailable or unsupporting backends get a row with `status` and the reason; a backend that
    fails is recorded as `status="error"` and does not stop the others. With `store` (True: the
    default store, or a folder), the run's file is rewritten after each backend, so a run killed
    midway keeps every backend that finished.
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
    policy = policy or TimingPolicy()
    options = options or {}
    names = list(backends) if backends else registry.names()
    for name in names:
        registry.backend_info(name)  # unknown names fail before any measuring starts; broken plugins become "unavailable"
    dataset, eval_arrays = resolve_data(model, data, max_eval_samples)
    if dataset is not None and signal is not None:
        dataset = dataset.with_signal(signal)

    from yukti import environment

    env = environment.fingerprint()
    run_id = uuid.uuid4().hex[:12]
    common = {
        "run_id": run_id, "model": model.name, "model_hash": model.hash if model.has_onnx else None,
        "threads": threads, "dataset": dataset.label if dataset else "random inputs",
        "dataset_synthetic": bool(dataset.synthetic) if dataset else True, "n_samples": len(eval_arrays[0]),
        "signal_class": dataset.signal_name if dataset else None,
        "timestamp": pd.Timestamp.now(tz="UTC"), **env,
    }

    run_file = results.new_run_path(None if store is True else store) if store else None
    progress_bar = _Progress(progress, total=len(names) * (1 + len(batch_sizes)) + 1)
    rows: list[dict[str, Any]] = []
    with progress_bar:
        progress_bar.step(f"reference outputs ({REFERENCE_BACKEND})")
        reference_out = evaluate(registry.runner(REFERENCE_BACKEND, model, **options.get(REFERENCE_BACKEND, {})), eval_arrays)
        for name in names:
            rows.extend(_measure_backend(name, model, batch_sizes, threads, options.get(name, {}), policy,
                                         eval_arrays, reference_out, dataset, progress_bar))
            log.info("measured %s (run %s)", name, run_id)
            if run_file is not None:
                # The whole run so far, atomically: a kill loses at most the backend in flight.
                results.write_run(_run_frame(common, rows), run_file)
                log.info("stored %s (run %s, %d rows) in %s", name, run_id, len(rows), run_file)
    return _run_frame(common, rows)


def _run_frame(common: dict[str, Any], rows: list[dict[str, Any]]) -> pd.DataFrame:
    return results.conform(pd.DataFrame([{**common, **row} for row in rows]))


def _measure_backend(name: str, model: Model, batch_sizes: list[int], threads: int, extra: dict[str, Any],
                     policy: TimingPolicy, eval_arrays: list[np.ndarray], reference_out: np.ndarray,
                     dataset: Dataset | None, progress: "_Progress") -> list[dict[str, Any]]:
    info = registry.backend_info(name)
    if not info.available:
        base = {"backend": name, "options": dict(extra), "device": extra.get("device", "cpu")}
        progress.skip(1 + len(batch_sizes))
        return [{**base, "batch_size": b, "status": "unavailable", "error": info.reason} for b in batch_sizes]
    cls = registry.runner_class(name)
    opts = _options_for(cls, threads, extra)
    base = {"backend": name, "options": opts, "device": opts.get("device", "cpu")}
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
        outputs = evaluate(runner, eval_arrays)
        quality.update(metrics.fidelity(outputs, reference_out))
        if dataset is not None and dataset.y is not None:
            quality.update(metrics.physics(outputs, dataset.y, dataset.signal_class))
    except Exception as exc:  # one failing backend must not lose the others' results
        progress.skip(len(batch_sizes))
        return skipped("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    rows = []
    for batch in batch_sizes:
        progress.step(f"{name}: batch {batch}")
        inputs = batch_of(eval_arrays, batch)
        try:
            call_ns = time_calls(runner, inputs, policy)
            timing = metrics.latency_stats(call_ns, batch)
            native = getattr(runner, "time_native", None)
            if callable(native):
                # about half the Python loop's budget again, spent natively (at least 1000 calls)
                n_native = int(np.clip(policy.time_budget_s * 1e9 / 2 / max(float(np.median(call_ns)), 1.0), 1000, 10**6))
                timing["latency_native_p50_us"] = float(np.median(native(inputs, n_native))) / 1e3
            rows.append({**base, **quality, **timing, "batch_size": batch, "status": "ok", "error": None,
                         "peak_rss_mb": _peak_rss_mb()})
        except Exception as exc:
            rows.append({**base, **quality, "batch_size": batch, "status": "error", "error": f"{type(exc).__name__}: {exc}"})
    return rows


class _Progress:
    """A rich progress bar when asked for; silent otherwise."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total = enabled, total
        self._bar = None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(TextColumn("{task.description:<32}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TimeElapsedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task("starting", total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def step(self, description: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=description)

    def skip(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
