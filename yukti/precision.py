"""Which fixed-point precision keeps the physics? Profiling and precision scans.

    prof = yukti.profile(model)                   # per hls4ml layer: float value ranges -> integer bits
    df = yukti.scan(model, bits=range(6, 19, 2), int_bits=range(2, 9), max_auc_drop=0.005)
    df.attrs["smallest"]                          # the cheapest configuration within the bound

One row per configuration: the precision (one type for the whole model, or per layer from the
profile), its argmax agreement with the float model, AUC and AUC drop, signal efficiency at fixed
background, max/mean absolute error, and how many values each layer wrapped or saturated. Each
configuration runs on the `fixed` backend (bit-identical to hls4ml's emulation, in seconds instead
of half a minute), so a scan of dozens of settings is a coffee-free affair. Results go to the scan
store (`scan_store()`), one Parquet file per scan.
"""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from yukti import metrics, registry
from yukti.errors import InputError
from yukti.fixed_point import FixedType, PrecisionError, precision_grid
from yukti.progress import Progress

DEFAULT_BITS = range(6, 19, 2)
DEFAULT_INT_BITS = range(2, 9, 2)
# Columns of a scan frame, in order (the dashboard's Precision page reads these names).
SCAN_COLUMNS = [
    "scan_id", "model", "model_hash", "backend", "mode", "config", "width", "integer_bits", "precision",
    "layer_precision", "argmax_agreement", "auc", "auc_drop", "eff_at_bkg_1pct", "eff_at_bkg_10pct",
    "max_abs_diff", "mean_abs_diff", "overflows", "overflow_layers", "prepare_s", "meets", "smallest",
    "reference_auc", "task", "dataset", "n_samples", "signal_class", "timestamp", "host", "cpu",
]


def scan_store(store: str | os.PathLike | None = None) -> Path:
    """Where scans are kept: `scans/` inside the results store (kept apart from benchmark runs,
    whose rows are one per backend and batch size)."""
    from yukti.results import default_store

    return Path(store) / "scans" if store is not None else default_store() / "scans"


def integer_bits_for(abs_max: float) -> int:
    """Integer bits (sign included) of the smallest signed type holding +-abs_max (at least 1)."""
    if not math.isfinite(abs_max) or abs_max <= 0:
        return 1
    return max(1, math.floor(math.log2(abs_max)) + 2)


def profile(model: Any, data: Any = None, *, n_samples: int = 2000, source: str = "auto") -> pd.DataFrame:
    """Per hls4ml layer (the names `layer_precision` takes): the float model's output range on the
    data (min, max, largest magnitude, its 99.9th percentile) and its weights' largest magnitude,
    with the integer bits each needs; like hls4ml's numerical profiling, without plotting."""
    from yukti.engine import resolve_data, resolve_model
    from yukti.runners.hls4ml.build import convert
    from yukti.runners.hls4ml.frontend import choose_source, frontend_for
    from yukti.runners.hls4ml.runner import HLS4MLRunner

    model = resolve_model(model)
    _, arrays = resolve_data(model, data, n_samples)
    if len(arrays) != 1:
        raise InputError(f"profile() takes single-input models; {model.name!r} has {len(arrays)} inputs")
    frontend = frontend_for(choose_source(model, source))
    options = {k: v for k, v in HLS4MLRunner.resolve_options({"source": source}).items() if k not in ("threads", "check_finite")}
    import tempfile

    with tempfile.TemporaryDirectory(prefix="yukti-profile-") as tmp:
        hls_model = convert(model, frontend, options, Path(tmp) / "unwritten")
        x = np.ascontiguousarray(arrays[0], dtype=np.float32)
        floats = frontend.float_activations(model, hls_model, x)
    rows = []
    for layer in hls_model.get_layers():
        value = x if layer.class_name == "Input" else floats.get(layer.name)
        row: dict[str, Any] = {"layer": layer.name, "class": layer.class_name}
        if value is not None:
            flat = np.asarray(value, dtype=np.float64).ravel()
            magnitude = np.abs(flat)
            row.update(min=float(flat.min()), max=float(flat.max()), abs_max=float(magnitude.max()),
                       abs_p999=float(np.quantile(magnitude, 0.999)), integer_bits=integer_bits_for(float(magnitude.max())))
        for key, var in layer.weights.items():
            largest = float(np.abs(np.asarray(var.data, dtype=np.float64)).max()) if np.size(var.data) else 0.0
            row[f"{key}_abs_max"] = largest
            row[f"{key}_integer_bits"] = integer_bits_for(largest)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.attrs["model"] = model.name
    return frame


def per_layer_precisions(prof: pd.DataFrame, width: int, *, margin: int = 0) -> dict[str, dict[str, str]]:
    """`layer_precision` for total width `width`: each layer's result (and accum) gets the integer
    bits its float range needs (+ `margin`), its weights and biases theirs; capped at the width."""
    def fixed(integer: float) -> str:
        return str(FixedType(width, int(min(width, integer + margin))))

    config: dict[str, dict[str, str]] = {}
    for row in prof.to_dict("records"):
        entry: dict[str, str] = {}
        if "integer_bits" in row and not pd.isna(row.get("integer_bits")):
            entry["result"] = fixed(row["integer_bits"])
            if row["class"] not in ("Input", "Activation", "Softmax", "Reshape", "Transpose", "Pooling1D", "Pooling2D"):
                entry["accum"] = entry["result"]
        for key in ("weight", "bias", "scale"):
            bits = row.get(f"{key}_integer_bits")
            if bits is not None and not pd.isna(bits):
                entry[key] = fixed(bits)
        if entry and row["class"] != "Softmax":  # the softmax keeps hls4ml's table types
            config[row["layer"]] = entry
    return config


def _configs(precisions: Iterable[Any] | None, bits: Iterable[int], int_bits: Iterable[int], per_layer: bool,
             prof: pd.DataFrame | None, margin: int) -> list[dict[str, Any]]:
    if per_layer:
        assert prof is not None
        return [{"mode": "per-layer", "config": f"per-layer W={w}", "width": w, "integer_bits": None,
                 "precision": str(FixedType(w, min(w, 6))),
                 "layer_precision": per_layer_precisions(prof, w, margin=margin)} for w in bits]
    types = [FixedType.parse(p) for p in precisions] if precisions is not None else precision_grid(list(bits), list(int_bits))
    if not types:
        raise InputError("the scan grid is empty: give precisions, or bits and int_bits with some I <= W")
    return [{"mode": "global", "config": str(t), "width": t.width, "integer_bits": t.integer, "precision": str(t),
             "layer_precision": None} for t in types]


def scan(model: Any, precisions: Iterable[Any] | None = None, *, bits: Iterable[int] = DEFAULT_BITS,
         int_bits: Iterable[int] = DEFAULT_INT_BITS, per_layer: bool = False, margin: int = 0, data: Any = None,
         n_samples: int = 20_000, backend: str = "fixed", options: dict[str, Any] | None = None,
         signal: int | str | None = None, max_auc_drop: float | None = None, min_agreement: float | None = None,
         workers: int | None = None, progress: bool | Callable[[float, str], None] = False,
         store: bool | str = True, target: str | None = None) -> pd.DataFrame:
    """Run `model` at every precision of the grid and measure what each does to the physics.

    `precisions`: explicit types ("ap_fixed<10,4>", ...); else every ap_fixed<W, I> with W in `bits`
    and I in `int_bits`. `per_layer=True`: one configuration per width W, each layer's integer bits
    from `profile()` (+ `margin`). `options`: more backend options (strategy, rounding via the type
    string: "ap_fixed<10,4,AP_RND,AP_SAT>"). `max_auc_drop` / `min_agreement`: the bound the
    `meets` column checks; `df.attrs["smallest"]` is then the cheapest row that meets it (fewest
    bits, then fewest integer bits), and its `smallest` column is True.
    """
    from yukti import environment
    from yukti.engine import _Baseline, reference_outputs, resolve_data, resolve_model

    model = resolve_model(model)
    options = dict(options or {})
    cls = registry.runner_class(backend)
    if not cls.fixed_point:
        raise InputError(f"scan() runs fixed-point backends; {backend!r} is not one (try 'fixed' or 'hls4ml')")
    bits, int_bits = list(bits), list(int_bits)
    for name, values in (("bits", bits), ("int_bits", int_bits)):
        if not all(isinstance(v, (int, np.integer)) for v in values):
            raise InputError(f"{name} must be integers; got {values!r}")
    if per_layer and precisions is not None:
        raise InputError("per_layer=True derives each layer's type from the profile; do not also give precisions")
    try:
        prof = profile(model, data, n_samples=min(n_samples, 5000)) if per_layer else None
        configs = _configs(precisions, bits, int_bits, per_layer, prof, margin)
    except PrecisionError as exc:
        raise InputError(str(exc)) from None
    task = metrics.infer_task(model)
    dataset, arrays = resolve_data(model, data, n_samples, target=target)
    if dataset is not None and signal is not None:
        dataset = dataset.with_signal(signal)
    baseline = _Baseline(task, arrays, reference_outputs(model, arrays), dataset, reconstructs=model.reconstructs)
    reference_auc = baseline.quality.get("auc")
    scan_id = uuid.uuid4().hex[:12]
    env = environment.fingerprint()

    def measure(config: dict[str, Any]) -> dict[str, Any]:
        row = {k: v for k, v in config.items() if k != "layer_precision"}
        row["layer_precision"] = json.dumps(config["layer_precision"], sort_keys=True) if config["layer_precision"] else None
        given = {**options, "precision": config["precision"]}
        if config["layer_precision"]:
            given["layer_precision"] = config["layer_precision"]
        if "count_overflows" in cls.options:
            given["count_overflows"] = True
        started = time.perf_counter()
        try:
            runner = registry.runner(backend, model, **given)
        except Exception as exc:  # noqa: BLE001 - one configuration that cannot be built is a row, not the end
            return {**row, "status": "error", "error": f"{type(exc).__name__}: {exc}"[:500]}
        row["prepare_s"] = time.perf_counter() - started
        outputs = np.concatenate([np.asarray(runner.run_validated([a[i:i + 4096] for a in arrays])[0])
                                  for i in range(0, len(arrays[0]), 4096)])
        row.update({k: v for k, v in baseline.compare(outputs).items() if not isinstance(v, (list, dict))})
        if hasattr(runner, "overflows"):
            report = runner.overflows()
            per_layer_counts = report.groupby("layer", sort=False)["overflows"].sum()
            row["overflows"] = int(per_layer_counts.sum())
            row["overflow_layers"] = json.dumps({k: int(v) for k, v in per_layer_counts.items() if v})
        row["status"] = "ok"
        return row

    rows: list[dict[str, Any]] = []
    # a configuration's build is mostly the compiler (a subprocess): threads overlap them
    workers = workers or max(1, min(len(configs), os.cpu_count() or 1))
    with Progress(progress, total=len(configs)) as bar, ThreadPoolExecutor(workers) as pool:
        for row in pool.map(measure, configs):
            bar.step(f"{row['config']} ({row['status']})")
            rows.append(row)
    frame = pd.DataFrame(rows)
    common = {"scan_id": scan_id, "model": model.name, "model_hash": model.hash if model.has_onnx else None,
              "backend": backend, "reference_auc": reference_auc, "task": task,
              "dataset": dataset.label if dataset else "random inputs", "n_samples": len(arrays[0]),
              "signal_class": dataset.signal_name if dataset is not None and dataset.class_names else None, "timestamp": pd.Timestamp.now(tz="UTC"),
              "host": env.get("host"), "cpu": env.get("cpu")}
    for key, value in common.items():
        frame[key] = value
    if "auc" in frame and reference_auc is not None:
        frame["auc_drop"] = reference_auc - frame["auc"]
    frame = _judge(frame, max_auc_drop, min_agreement)
    columns = [c for c in SCAN_COLUMNS if c in frame.columns] + [c for c in frame.columns if c not in SCAN_COLUMNS]
    frame = frame[columns].sort_values(["width", "integer_bits"], na_position="last", kind="stable").reset_index(drop=True)
    smallest = frame[frame.get("smallest", pd.Series(False, index=frame.index)).fillna(False).astype(bool)]
    frame.attrs["smallest"] = smallest.iloc[0].to_dict() if len(smallest) else None
    frame.attrs["bound"] = {"max_auc_drop": max_auc_drop, "min_agreement": min_agreement}
    if store:
        write_scan(frame, None if store is True else store)
    return frame


def _judge(frame: pd.DataFrame, max_auc_drop: float | None, min_agreement: float | None) -> pd.DataFrame:
    """`meets` (the bound holds) and `smallest` (the cheapest configuration that meets it)."""
    if max_auc_drop is None and min_agreement is None:
        return frame
    ok = frame.get("status", pd.Series("ok", index=frame.index)) == "ok"
    if max_auc_drop is not None:
        if "auc_drop" not in frame or frame["auc_drop"].isna().all():
            raise InputError("max_auc_drop needs labelled data with two classes (the scan measured no AUC); "
                             "give data=(a labelled dataset) or use min_agreement")
        ok &= frame["auc_drop"] <= max_auc_drop
    if min_agreement is not None:
        ok &= frame["argmax_agreement"] >= min_agreement
    frame["meets"] = ok.fillna(False).astype(bool)
    frame["smallest"] = False
    candidates = frame[frame["meets"]].sort_values(["width", "integer_bits"], na_position="last", kind="stable")
    if len(candidates):
        frame.loc[candidates.index[0], "smallest"] = True
    return frame


def write_scan(frame: pd.DataFrame, store: str | os.PathLike | None = None) -> Path:
    """One scan as one Parquet file in the scan store (atomic: temp file + rename)."""
    import io

    from yukti.cache import atomic_write_bytes
    from yukti.results import new_run_path

    path = new_run_path(scan_store(store))
    buffer = io.BytesIO()
    stored = frame.copy()
    stored.attrs = {}
    stored.to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())


def load_scans(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored scan row (oldest first); an empty frame with the scan columns when there are none."""
    folder = scan_store(store)
    frames = []
    for path in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        try:
            frames.append(pd.read_parquet(path))
        except Exception:  # noqa: BLE001 - a damaged file is skipped, like the results store does
            continue
    if not frames:
        return pd.DataFrame(columns=SCAN_COLUMNS)
    return pd.concat(frames, ignore_index=True)


def describe_smallest(frame: pd.DataFrame) -> str:
    """One sentence: the cheapest configuration within the bound, or why there is none."""
    bound = frame.attrs.get("bound") or {}
    texts = {"max_auc_drop": "AUC drop <= {}", "min_agreement": "argmax agreement >= {}"}
    wanted = " and ".join(texts[k].format(v) for k, v in bound.items() if v is not None)
    best = frame.attrs.get("smallest")
    if not wanted:
        return "no bound given (max_auc_drop / min_agreement): every configuration is listed"
    if best is None:
        return f"no configuration meets {wanted}; widen the grid (more bits or integer bits)"
    drop = best.get("auc_drop")
    drop_text = f", AUC drop {drop:.4f}" if drop is not None and drop == drop else ""
    return (f"smallest precision with {wanted}: {best['config']} ({best['width']} bits{drop_text}, "
            f"argmax agreement {best.get('argmax_agreement', float('nan')):.4f})")


__all__: Sequence[str] = ("profile", "scan", "per_layer_precisions", "integer_bits_for", "load_scans", "scan_store",
                          "write_scan", "describe_smallest", "SCAN_COLUMNS")
