"""The results schema and the local results store.

Store: a folder of Parquet files, one per benchmark run, each written atomically (temp file +
rename). Chosen over SQLite because appending a run never rewrites or locks earlier data (two
processes can store at once), new columns need no migration (readers take the union of columns),
and pandas/pyarrow read it directly, as the dashboard and asv loader do.
"""

from __future__ import annotations

import io
import json
import os
import time
import uuid
from pathlib import Path

import pandas as pd

from yukti.cache import atomic_write_bytes

# One row per model x backend x batch size. Units are in the column names. Columns may be added;
# renaming one needs a migration in `load`.
COLUMNS = [
    "run_id", "model", "model_hash", "backend", "backend_version", "options", "status", "error",
    "batch_size", "threads", "device",
    "latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_mean_us", "latency_std_us", "latency_native_p50_us",
    "n_calls", "throughput_per_s",
    "max_abs_diff", "mean_abs_diff", "argmax_agreement", "auc", "eff_at_bkg_1pct", "eff_at_bkg_10pct", "signal_class",
    "prepare_s", "artifact_bytes", "peak_rss_mb", "rss_prepare_mb",
    "dataset", "dataset_synthetic", "n_samples",
    "git_commit", "timestamp", "host", "cpu", "cpu_cores", "python", "platform", "packages",
]


def default_store() -> Path:
    if os.environ.get("YUKTI_RESULTS_DIR"):
        return Path(os.environ["YUKTI_RESULTS_DIR"])
    from platformdirs import user_data_dir

    return Path(user_data_dir("yukti")) / "results"


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Every schema column present (missing ones as NA), schema columns first, extras after."""
    frame = frame.copy()
    for column in COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    for column in ("options", "packages"):  # nested dicts travel as JSON text, in memory as on disk
        frame[column] = frame[column].map(_as_json)
    extras = [c for c in frame.columns if c not in COLUMNS]
    return frame[COLUMNS + extras]


def _as_json(value: object) -> object:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def append(frame: pd.DataFrame, store: str | os.PathLike | None = None) -> Path:
    """Write one run's rows as a new Parquet file in the store; returns its path."""
    folder = Path(store) if store is not None else default_store()
    # Nanosecond stamp first: file names sort in the order runs were stored, even within a second.
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = folder / f"{stamp}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
    buffer = io.BytesIO()
    conform(frame).to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())


def load(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored row, oldest run first (an empty frame with the schema when there are none)."""
    folder = Path(store) if store is not None else default_store()
    files = sorted(folder.glob("*.parquet")) if folder.is_dir() else []
    if not files:
        return conform(pd.DataFrame(columns=COLUMNS))
    frames = [pd.read_parquet(f) for f in files]
    frame = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    frame = conform(frame)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return frame


def fingerprint_of(run: pd.DataFrame) -> dict[str, object]:
    """The environment a run was measured in (host, CPU, Python, packages, commit)."""
    first = run.iloc[0]
    packages = first.get("packages")
    return {
        "host": first.get("host"), "cpu": first.get("cpu"), "cpu_cores": first.get("cpu_cores"),
        "python": first.get("python"), "platform": first.get("platform"), "git_commit": first.get("git_commit"),
        "packages": json.loads(packages) if isinstance(packages, str) else packages,
    }
