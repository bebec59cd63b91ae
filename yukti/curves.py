"""Fidelity curves stored with the results: what the dashboard's Fidelity page draws, so opening it
runs no backend.

A run's curves live in a side file next to its results file in the store,
`<run file stem>.<run_id>.curves.parquet` (`path_for`), written atomically and rewritten as each
backend finishes, like the run file. The run id in the name finds a run's curves without reading
any file (`find`). The results store (yukti.results) ignores these files by name (`is_curves_file`).
Curves are a convenience: a run without them (stored before they existed, or by another tool), or
with an unreadable one, has no curves, never an error.

One tidy frame, one row per point (`COLUMNS`), per backend configuration:

- `curve == "efficiency"`: x = background efficiency (false-positive rate for anomaly detection),
  y = signal efficiency, of the task's score (yukti.metrics.task_score) on labelled data;
  classification and anomaly tasks only (regression has no signal);
- `curve == "abs_diff"`: x = bin centre of log10 |output − reference output|, y = how many output
  values fall in the bin (values beyond the edges count in the outermost bins); `n_values` and
  `n_equal` say how many output values were compared and how many equal the reference's exactly.
  Not for the reference itself.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from yukti import metrics, vocabulary
from yukti.cache import atomic_write_bytes

SUFFIX = ".curves.parquet"
EFFICIENCY, ABS_DIFF = "efficiency", "abs_diff"
COLUMNS = ["run_id", "model", "backend", "options", "task", "curve", "x", "y", "n_values", "n_equal"]

# log10 |Δ| bins: float32 rounding (~1e-8) up to differences of thousands of output units.
DIFF_EDGES = np.arange(-12.0, 4.001, 0.25)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def path_for(run_file: str | os.PathLike, run_id: str) -> Path:
    """The curves file of the run stored in `run_file`."""
    run_file = Path(run_file)
    return run_file.with_name(f"{run_file.stem}.{_UNSAFE.sub('_', str(run_id))}{SUFFIX}")


def is_curves_file(path: str | os.PathLike) -> bool:
    return Path(path).name.endswith(SUFFIX)


def of_backend(backend: str, options: Any, task: str, outputs: np.ndarray, reference: np.ndarray, *,
               labels: np.ndarray | None = None, signal_class: int | None = None,
               inputs: np.ndarray | None = None) -> pd.DataFrame:
    """The curves of one backend's outputs on the evaluation samples (without run_id and model)."""
    parts = []
    if labels is not None and signal_class is not None and task != vocabulary.REGRESSION:
        is_signal = np.asarray(labels) == signal_class
        if is_signal.any() and not is_signal.all():
            bkg, sig = metrics.efficiency_curve(metrics.task_score(outputs, task, signal_class, inputs), is_signal)
            parts.append(pd.DataFrame({"curve": EFFICIENCY, "x": bkg, "y": sig}))
    if backend != vocabulary.REFERENCE_BACKEND:
        diff = np.abs(np.asarray(outputs, dtype=np.float64) - np.asarray(reference, dtype=np.float64)).ravel()
        nonzero = diff[diff > 0]
        logs = np.clip(np.log10(nonzero), DIFF_EDGES[0], DIFF_EDGES[-1])  # outliers count in the outermost bins
        counts, _ = np.histogram(logs, bins=DIFF_EDGES)
        parts.append(pd.DataFrame({"curve": ABS_DIFF, "x": (DIFF_EDGES[:-1] + DIFF_EDGES[1:]) / 2, "y": counts.astype(float),
                                   "n_values": len(diff), "n_equal": len(diff) - len(nonzero)}))
    if not parts:
        return empty()
    frame = pd.concat(parts, ignore_index=True).assign(backend=backend, options=_options_text(options), task=task)
    return conform(frame)


def empty() -> pd.DataFrame:
    return conform(pd.DataFrame(columns=COLUMNS))


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame = frame[COLUMNS]
    return frame.astype({"x": float, "y": float, "n_values": "Int64", "n_equal": "Int64"})


def _options_text(options: Any) -> Any:
    """Options as the results store keeps them (sorted JSON text), so curves match their rows."""
    from yukti.results import conform as conform_results

    return conform_results(pd.DataFrame({"options": [options]}))["options"].iloc[0]


def write(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write (or atomically rewrite) one run's curves file."""
    buffer = io.BytesIO()
    conform(frame).to_parquet(buffer, index=False)
    return atomic_write_bytes(Path(path), buffer.getvalue())


def read_file(path: str | os.PathLike) -> tuple[pd.DataFrame | None, str]:
    """(curves, "") for a curves file; (None, why) for anything else."""
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - any unreadable bytes mean "no curves"
        return None, f"not a readable Parquet file ({type(exc).__name__})"
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        return None, f"not a curves file: no column(s) {', '.join(missing)}"
    return conform(frame), ""


def find(store: str | os.PathLike, run_id: str) -> list[Path]:
    """The curves files of run `run_id` in `store` (found by name: no file is read)."""
    folder = Path(store)
    if not folder.is_dir():
        return []
    return sorted(folder.glob(f"*.{_UNSAFE.sub('_', str(run_id))}{SUFFIX}"))


def load(store: str | os.PathLike, run_ids: Iterable[str]) -> pd.DataFrame:
    """The stored curves of these runs; runs without a readable curves file contribute nothing."""
    frames = []
    for run_id in dict.fromkeys(str(r) for r in run_ids):
        for path in find(store, run_id):
            frame, _ = read_file(path)
            if frame is not None:
                frames.append(frame[frame["run_id"].astype(str) == run_id])
    frames = [f for f in frames if len(f)]
    return conform(pd.concat(frames, ignore_index=True)) if frames else empty()


def store(parts: Iterable[pd.DataFrame], run_file: str | os.PathLike, *, run_id: str, model: str) -> Path | None:
    """Write the curves kept so far next to `run_file` (the engine calls this after each backend).
    A store that cannot take them loses the curves only: the run's results are already written."""
    import logging

    parts = [p for p in parts if len(p)]
    frame = conform(pd.concat(parts, ignore_index=True)) if parts else empty()
    try:
        return write(frame.assign(run_id=str(run_id), model=model), path_for(run_file, run_id))
    except OSError as exc:
        logging.getLogger(__name__).warning("fidelity curves of run %s not stored: %s", run_id, exc)
        return None
