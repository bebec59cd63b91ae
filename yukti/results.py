"""The results schema and the local results store.

Store: a folder of Parquet files, one per benchmark run, each written atomically (temp file +
rename). Chosen over SQLite because appending a run never rewrites or locks earlier data (two
processes can store at once), new columns need no migration (readers take the union of columns),
and pandas/pyarrow read it directly, as the dashboard and asv loader do.

A benchmark rewrites its own run's file (atomically) after each backend, so a killed run keeps every
backend that finished. Reading degrades instead of failing: a file that is not a readable results
file is skipped with a StoreWarning naming it, and temp files left by a writer killed mid-store are
recovered (complete) or removed (incomplete) once older than STALE_TMP_AGE_S. A run's fidelity
curves live in a side file next to it (yukti.curves); reading ignores those by name.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from yukti import curves, vocabulary
from yukti.cache import atomic_write_bytes

# One row per model x backend x batch size. Units are in the column names; each metric's meaning,
# unit and direction is in yukti.vocabulary. Columns may be added; renaming one needs an alias
# there (`Metric.aliases`), which `load` and `from_asv` read as the new name.
# flop_per_sample (the model's FLOP per sample) and peak_gflops (the host's FP32 FMA peak at the
# row's threads, None off the CPU) are yukti.roofline's; gflops and pct_of_peak derive from them.
COLUMNS = [
    "run_id", "model", "model_hash", "backend", "backend_version", "options", "status", "error",
    "batch_size", "threads", "device",
    "latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_mean_us", "latency_std_us", "latency_native_p50_us",
    "n_calls", "throughput_per_s", "flop_per_sample", "peak_gflops",
    "max_abs_diff", "mean_abs_diff", "argmax_agreement", "auc", "eff_at_bkg_1pct", "eff_at_bkg_10pct", "signal_class",
    "task", "reference_auc", "max_rel_error", "mean_rel_error", "resolution", "score_rel_error",
    "overflows", "overflow_layers",
    "prepare_s", "artifact_bytes", "peak_rss_mb", "rss_prepare_mb",
    "dataset", "dataset_synthetic", "n_samples",
    "git_commit", "timestamp", "host", "cpu", "cpu_cores", "python", "platform", "packages",
]


# Metrics computed when a frame is read (yukti.vocabulary), after the schema's columns and any extras.
DERIVED_COLUMNS = [c for c, m in vocabulary.METRICS.items() if m.derive is not None and c not in COLUMNS]


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


def with_derived(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with old metric names migrated and the derived metrics (accuracy drop, AUC drop, ...)
    filled in, by yukti.vocabulary.derive (rows of one run share their reference's AUC)."""
    return vocabulary.derive(frame)


def _as_json(value: object) -> object:
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def new_run_path(store: str | os.PathLike | None = None) -> Path:
    """A fresh file name for one run in the store (nothing is written)."""
    folder = Path(store) if store is not None else default_store()
    # Nanosecond stamp first: file names sort in the order runs were stored, even within a second.
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return folder / f"{stamp}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"


def write_run(frame: pd.DataFrame, path: Path) -> Path:
    """Write (or atomically rewrite, with more rows) one run's file; returns its path."""
    buffer = io.BytesIO()
    conform(frame).to_parquet(buffer, index=False)
    return atomic_write_bytes(path, buffer.getvalue())


def append(frame: pd.DataFrame, store: str | os.PathLike | None = None) -> Path:
    """Write one run's rows as a new Parquet file in the store; returns its path."""
    return write_run(frame, new_run_path(store))


class StoreWarning(UserWarning):
    """A results file was skipped as unreadable, or a leftover of a killed writer was cleaned."""


# atomic_write_bytes writes `.<name>.<random>.tmp` and renames it within milliseconds; an older one
# was left by a process killed while storing. A younger one may belong to a writer still at work.
STALE_TMP_AGE_S = 300.0
_LEFTOVER = re.compile(r"^\.(?P<name>[^/]+\.parquet)\.[^.]+\.tmp$")

# Every row the engine writes has these; a Parquet file without them is not a results file.
IDENTITY_COLUMNS = ("run_id", "model", "backend", "status")


@dataclass(frozen=True)
class SkippedFile:
    path: Path
    reason: str


@dataclass(frozen=True)
class StoreContents:
    """What `read_store` found: the rows, and every file it could not use or had to clean up."""

    frame: pd.DataFrame  # as `load` returns it
    files: tuple[Path, ...]  # results files read
    skipped: tuple[SkippedFile, ...]  # unreadable or foreign files, left in place
    recovered: tuple[Path, ...]  # complete leftovers of killed writers, renamed into result files
    removed: tuple[SkippedFile, ...]  # incomplete leftovers of killed writers, deleted


def load(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored row, oldest run first (an empty frame with the schema when there are none),
    with the derived metrics (`with_derived`).

    Files that cannot be read as results are skipped with a StoreWarning naming each (`read_store`
    lists them); stale leftovers of killed writers are recovered or removed first."""
    return read_store(store).frame


def read_store(store: str | os.PathLike | None = None, *, warn: bool = True,
               stale_tmp_age_s: float = STALE_TMP_AGE_S) -> StoreContents:
    """The store's rows and a report of what was skipped, recovered and removed.

    A file is skipped (never deleted) when it is not a readable Parquet file, lacks the identity
    columns (IDENTITY_COLUMNS) or has an unreadable timestamp; with `warn`, a StoreWarning names each.
    A `.<name>.parquet.<random>.tmp` older than `stale_tmp_age_s` seconds is renamed to `<name>.parquet`
    when it holds a complete results file (a writer killed between writing and renaming), and deleted
    otherwise; younger ones are left alone. A store that cannot be written keeps its leftovers."""
    folder = Path(store) if store is not None else default_store()
    empty = with_derived(conform(pd.DataFrame(columns=COLUMNS)))
    if not folder.is_dir():
        return StoreContents(empty, (), (), (), ())
    recovered, removed, already_read = _tidy(folder, stale_tmp_age_s)
    files = sorted(p for p in folder.glob("*.parquet") if not curves.is_curves_file(p))  # a run's curves: yukti.curves
    frames, read, skipped = [], [], []
    for path in files:
        frame, reason = already_read[path] if path in already_read else _read_results_file(path)
        if frame is None:
            skipped.append(SkippedFile(path, reason))
        else:
            frames.append(frame)
            read.append(path)
    if warn:
        for item in removed:
            warnings.warn(f"removed {item.path}, an incomplete leftover of a killed run ({item.reason})", StoreWarning, stacklevel=2)
        for path in recovered:
            warnings.warn(f"recovered {path} from the leftover of a run killed while storing", StoreWarning, stacklevel=2)
        for item in skipped:
            warnings.warn(f"skipped {item.path}: {item.reason}", StoreWarning, stacklevel=2)
    filled = [f for f in frames if len(f)]
    if not frames:
        frame = empty
    else:  # concatenating all-NA columns of empty frames would change dtypes for nothing
        frame = with_derived(conform(pd.concat(filled, ignore_index=True) if filled else frames[0]))
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return StoreContents(frame, tuple(read), tuple(skipped), tuple(recovered), tuple(removed))


def tidy(store: str | os.PathLike | None = None, *, stale_tmp_age_s: float = STALE_TMP_AGE_S) -> tuple[list[Path], list[SkippedFile]]:
    """Recover or remove stale leftovers of killed writers (as `read_store` does); (recovered, removed)."""
    folder = Path(store) if store is not None else default_store()
    if not folder.is_dir():
        return [], []
    recovered, removed, _ = _tidy(folder, stale_tmp_age_s)
    return recovered, removed


def _read_results_file(path: Path) -> tuple[pd.DataFrame | None, str]:
    """(rows, "") for a results file; (None, why) for anything else. Reads the file once."""
    import pyarrow.parquet as pq

    if not path.is_file():
        return None, "not a regular file"
    try:
        table = pq.read_table(path)
    except Exception as exc:  # noqa: BLE001 - whatever the bytes are, one bad file must not break the store
        detail = _first_line(exc).replace(f"Could not open Parquet input source '{path}': ", "")  # the path is named already
        return None, f"not a readable Parquet file ({type(exc).__name__}: {detail})"
    missing = [c for c in IDENTITY_COLUMNS if c not in table.column_names]
    if missing:
        return None, f"not a Yukti results file: no column(s) {', '.join(missing)}"
    try:
        frame = table.to_pandas()
        if "timestamp" in frame.columns:
            frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    except Exception as exc:  # noqa: BLE001 - valid Parquet holding contents pandas cannot take
        return None, f"unreadable contents ({type(exc).__name__}: {_first_line(exc)})"
    return frame, ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _tidy(folder: Path, stale_tmp_age_s: float) -> tuple[list[Path], list[SkippedFile], dict[Path, tuple[pd.DataFrame | None, str]]]:
    recovered: list[Path] = []
    removed: list[SkippedFile] = []
    already_read: dict[Path, tuple[pd.DataFrame | None, str]] = {}
    now = time.time()
    for leftover in sorted(folder.glob(".*.tmp")):
        match = _LEFTOVER.match(leftover.name)
        if match is None:
            continue
        try:
            if now - leftover.stat().st_mtime < stale_tmp_age_s:
                continue  # possibly a writer between its write and its rename
            read = curves.read_file if curves.is_curves_file(match["name"]) else _read_results_file
            frame, reason = read(leftover)
            if frame is None:
                leftover.unlink()
                removed.append(SkippedFile(leftover, reason))
            else:
                # The leftover is the newest version of its run's file (a writer removes its temp file
                # on every failure but a kill), so it replaces an older version of the same name.
                target = folder / match["name"]
                os.replace(leftover, target)
                recovered.append(target)
                already_read[target] = (frame, "")
        except OSError:  # gone (another reader tidied it first), or a read-only store: reading still works
            continue
    return recovered, removed, already_read


def fingerprint_of(run: pd.DataFrame) -> dict[str, object]:
    """The environment a run was measured in (host, CPU, Python, packages, commit)."""
    first = run.iloc[0]
    packages = first.get("packages")
    cores = first.get("cpu_cores")
    return {  # plain Python values: numpy scalars would show as "np.int64(2)" in JSON views
        "host": first.get("host"), "cpu": first.get("cpu"), "cpu_cores": None if pd.isna(cores) else int(cores),
        "python": first.get("python"), "platform": first.get("platform"), "git_commit": first.get("git_commit"),
        "packages": json.loads(packages) if isinstance(packages, str) else packages,
    }


# -- asv results --------------------------------------------------------------------------------
# Columns from_asv adds to the schema: which commit a row measured, when that commit was made, and
# the asv environment and machine the numbers came from.
ASV_COLUMNS = ["commit_hash", "commit_date", "asv_env", "asv_machine"]


def _asv_metric(function: str, value: float | None) -> dict[str, float | None]:
    """Schema columns for one asv benchmark value, named after the benchmark function.

    `track_<column>` carries a metric column as it is (latency_p50_us, accuracy_drop, ...; an old
    name such as `argmax_disagreement` is migrated by yukti.vocabulary, and scores tracked as
    losses are derived back there). `time_<name>` (seconds per call) becomes `time_<name>_us`;
    `peakmem_<name>`/`mem_<name>` (bytes) become `..._mb`."""
    kind, _, name = function.partition("_")
    if kind == "track":
        return {name: value}
    if kind == "time":
        return {f"time_{name}_us": None if value is None else value * 1e6}
    if kind in ("peakmem", "mem"):
        return {f"{kind}_{name}_mb": None if value is None else value / 2**20}
    return {}


def from_asv(results_dir: str | os.PathLike, *, machine: str | None = None) -> pd.DataFrame:
    """asv results (`results_dir` as in asv.conf.json) in the schema of `yukti.benchmark`.

    One row per commit x asv environment x model x backend x batch size, with `commit_hash`,
    `commit_date` (the commit's date as asv recorded it), `asv_env`, `asv_machine`; `git_commit`
    repeats the hash. Benchmarks without a batch size parameter (accuracy, build cost) fill every
    batch row of their model x backend. A combination asv skipped everywhere has no row; one whose
    benchmark failed has `status="error"` and the failed benchmarks in `error`. Only results whose
    benchmark version matches `benchmarks.json` count, as in `asv compare`. A missing or empty
    results folder gives an empty frame with the columns.
    """
    import ast
    import itertools
    from types import SimpleNamespace

    folder = Path(results_dir)
    empty = with_derived(conform(pd.DataFrame(columns=COLUMNS + ASV_COLUMNS)))
    if not (folder / "benchmarks.json").is_file():
        return empty
    from asv import util as asv_util
    from asv.benchmarks import Benchmarks
    from asv.machine import Machine
    from asv.results import iter_results

    # Benchmarks.load reads only these two attributes of asv's Config.
    benchmarks = Benchmarks.load(SimpleNamespace(results_dir=str(folder), benchmark_dir=str(folder)))
    root = folder / machine if machine else folder
    if not root.is_dir():
        return empty

    rows: dict[tuple, dict[str, object]] = {}
    per_backend: dict[tuple, dict[str, object]] = {}  # metrics without batch size, broadcast below
    for result in iter_results(str(root)):
        machine_name = result.params.get("machine")
        facts = dict(result.params)
        machine_file = folder / str(machine_name) / "machine.json"
        if machine_file.is_file():  # cpu/os/num_cpu, when the results do not repeat them
            facts = {**asv_util.load_json(str(machine_file), api_version=Machine.api_version), **facts}
        requirements = {k: v for k, v in result.params.items()
                        if k not in ("machine", "python", "arch", "cpu", "num_cpu", "os", "ram")}
        common = {
            "commit_hash": result.commit_hash, "git_commit": result.commit_hash,
            "commit_date": pd.Timestamp(result.date, unit="ms", tz="UTC") if result.date else pd.NaT,
            "asv_env": result.env_name, "asv_machine": machine_name, "host": machine_name,
            "cpu": facts.get("cpu") or None, "cpu_cores": _int_or_none(facts.get("num_cpu")),
            "python": facts.get("python"), "platform": facts.get("os") or None, "packages": requirements,
            "run_id": f"asv-{result.commit_hash[:12]}-{result.env_name}", "source": "asv",
        }
        for name in sorted(result.get_result_keys(benchmarks)):
            meta = benchmarks[name]
            param_names = list(meta.get("param_names") or [])
            function = name.rsplit(".", 1)[-1]
            if "model" not in param_names or "backend" not in param_names or not _asv_metric(function, 0.0):
                continue  # not a model x backend benchmark of the suite
            params = result.get_result_params(name)
            values = result.get_result_value(name, params)
            stats = result.get_result_stats(name, params)
            started = result.started_at.get(name)
            for combo, value, stat in zip(itertools.product(*params), values, stats):
                named = dict(zip(param_names, (ast.literal_eval(p) for p in combo)))
                if value is not None and _isnan(value):
                    continue  # asv: skipped (NotImplementedError in setup)
                group = (result.commit_hash, result.env_name, machine_name, named["model"], named["backend"])
                metrics = _asv_metric(function, None if value is None else float(value))
                if value is not None and function.startswith("time_") and stat:
                    base = next(iter(metrics))[: -len("_us")]
                    metrics[f"{base}_q25_us"] = stat["q_25"] * 1e6
                    metrics[f"{base}_q75_us"] = stat["q_75"] * 1e6
                if "batch_size" in named:
                    target = rows.setdefault(group + (int(named["batch_size"]),), {
                        **common, "model": named["model"], "backend": named["backend"],
                        "batch_size": int(named["batch_size"]), "_failed": []})
                else:
                    target = per_backend.setdefault(group, {"_failed": []})
                target.update(metrics)
                if value is None:
                    target["_failed"].append(function)
                if started is not None:
                    stamp = pd.Timestamp(started, unit="ms", tz="UTC")
                    target["timestamp"] = min(stamp, target.get("timestamp", stamp))
                if "batch_size" not in named:
                    target["_common"] = common

    for group, metrics in per_backend.items():
        targets = [row for key, row in rows.items() if key[:5] == group]
        if not targets:  # only per-backend metrics (e.g. no batch was timed): one row, no batch size
            targets = [rows.setdefault(group + (None,), {**metrics["_common"], "model": group[3], "backend": group[4],
                                                          "batch_size": pd.NA, "_failed": []})]
        for row in targets:
            failed = row["_failed"] + metrics["_failed"]
            row.update({k: v for k, v in metrics.items() if not k.startswith("_")})
            row["_failed"] = failed
    if not rows:
        return empty
    records = []
    for row in rows.values():
        failed = row.pop("_failed")
        row["status"] = "error" if failed else "ok"
        row["error"] = f"asv benchmark(s) failed: {', '.join(sorted(set(failed)))}" if failed else None
        records.append(row)
    frame = with_derived(conform(pd.DataFrame(records)))
    for column in ASV_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    order = ["commit_date", "commit_hash", "asv_env", "model", "backend", "batch_size"]
    return frame.sort_values(order, kind="stable", na_position="last").reset_index(drop=True)


def _isnan(value: object) -> bool:
    return isinstance(value, float) and value != value


def _int_or_none(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
