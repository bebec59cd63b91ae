"""The results schema and the local results store.

Store: a folder of Parquet files, one per benchmark run, each written atomically (temp file +
rename). Chosen over SQLite because appending a run never rewrites or locks earlier data (two
processes can store at once), new columns need no migration (readers take the union of columns),
and pandas/pyarrow read it directly, as the dashboard and asv loader do.

A benchmark rewrites its own run's file (atomically) after each backend, so a killed run keeps every
backend that finished. Reading degrades instead of failing: a file that is not a readable results
file is skipped with a StoreWarning naming it, and temp files left by a writer killed mid-store are
recovered (complete) or removed (incomplete) once older than STALE_TMP_AGE_S. A run's fidelity
curves live in a side file next to it (yukti.curves); reading ignores those by name. Reading a
store of thousands of runs (a sweep stores one per cell) stays fast: the files are combined in
Arrow, and a large store's rows are kept in an index in the cache folder (`read_store`).
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
from stat import S_ISREG

import pandas as pd

from yukti import curves, vocabulary
from yukti.cache import atomic_write_bytes

# One row per model x backend x batch size. Units are in the column names; each metric's meaning,
# unit and direction is in yukti.vocabulary. Columns may be added; renaming one needs an alias
# there (`Metric.aliases`), which `load` and `from_asv` read as the new name.
# flop_per_sample (the model's FLOP per sample) and peak_gflops (the host's FP32 FMA peak at the
# row's threads, None off the CPU) are yukti.roofline's; gflops and pct_of_peak derive from them.
# sweep and cell: the sweep (yukti.sweep) a row was measured in and its cell's identity; empty otherwise.
COLUMNS = [
    "run_id", "model", "model_hash", "backend", "backend_version", "options", "status", "error",
    "batch_size", "threads", "device",
    "latency_p50_us", "latency_p90_us", "latency_p99_us", "latency_mean_us", "latency_std_us", "latency_native_p50_us",
    "n_calls", "throughput_per_s", "flop_per_sample", "peak_gflops",
    "max_abs_diff", "mean_abs_diff", "argmax_agreement", "auc", "eff_at_bkg_1pct", "eff_at_bkg_10pct", "signal_class",
    "task", "reference_auc", "max_rel_error", "mean_rel_error", "resolution", "score_rel_error",
    "overflows", "overflow_layers",
    "prepare_s", "artifact_bytes", "peak_rss_mb", "rss_prepare_mb",
    "dataset", "dataset_synthetic", "n_samples", "sweep", "cell",
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
    otherwise; younger ones are left alone. A store that cannot be written keeps its leftovers.

    Columns are the union of the files' columns; a column's type is the one its files agree on
    (integers and floats: float; a file where the column is all empty does not change it), and
    where they cannot agree (text in one file, numbers in another) the files are combined by pandas,
    as object columns. A store of INDEX_MIN_FILES results files or more keeps an index of what was
    read in the cache folder (`index_path`), so that the next load reads only new or changed files."""
    folder = Path(store) if store is not None else default_store()
    empty = with_derived(conform(pd.DataFrame(columns=COLUMNS)))
    if not folder.is_dir():
        return StoreContents(empty, (), (), (), ())
    recovered, removed, already_read = _tidy(folder, stale_tmp_age_s)
    listing = _results_files(folder)
    index = _StoreIndex.load(folder) if len(listing) >= INDEX_MIN_FILES else None
    known = index.unchanged(listing, exclude=already_read) if index is not None else {}
    to_read = [path for path, _ in listing if path not in known and path not in already_read]
    fresh = {**already_read, **dict(zip(to_read, _read_many(to_read)))}
    try:
        table = _combined_table([path for path, _ in listing], known, fresh, index)
        frame = None if table is None else _arrow_to_pandas(table)
    except _NeedsPandas:
        # Column types Arrow does not unify, or contents pandas cannot take: file by file, as
        # pandas concatenates them (slower, and such a store is not indexed).
        table = None
        frame = _frame_file_by_file([path for path, _ in listing], known, fresh)
    skipped = [SkippedFile(path, fresh[path].reason) for path, _ in listing
               if path not in known and fresh[path].table is None]
    read = [path for path, _ in listing if path in known or fresh[path].table is not None]
    if table is not None and len(listing) >= INDEX_MIN_FILES:
        _StoreIndex.save(folder, table, read, known, fresh, index)
    if warn:
        for item in removed:
            warnings.warn(f"removed {item.path}, an incomplete leftover of a killed run ({item.reason})", StoreWarning, stacklevel=2)
        for path in recovered:
            warnings.warn(f"recovered {path} from the leftover of a run killed while storing", StoreWarning, stacklevel=2)
        for item in skipped:
            warnings.warn(f"skipped {item.path}: {item.reason}", StoreWarning, stacklevel=2)
    if frame is None:
        frame = empty
    else:
        frame = with_derived(conform(frame))
        frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True)
    return StoreContents(frame, tuple(read), tuple(skipped), tuple(recovered), tuple(removed))


def tidy(store: str | os.PathLike | None = None, *, stale_tmp_age_s: float = STALE_TMP_AGE_S) -> tuple[list[Path], list[SkippedFile]]:
    """Recover or remove stale leftovers of killed writers (as `read_store` does); (recovered, removed)."""
    folder = Path(store) if store is not None else default_store()
    if not folder.is_dir():
        return [], []
    recovered, removed, _ = _tidy(folder, stale_tmp_age_s)
    return recovered, removed


def index_path(store: str | os.PathLike | None = None) -> Path:
    """Where the index of `store` (see `read_store`) is kept: in the cache folder
    (yukti.cache.default_root), named after the store's absolute path. Deleting it costs only time."""
    import hashlib

    from yukti.cache import default_root

    folder = (Path(store) if store is not None else default_store()).resolve()
    return default_root() / "store-index" / f"{hashlib.sha256(str(folder).encode()).hexdigest()[:32]}.parquet"


# -- reading many files fast ----------------------------------------------------------------------
# Opening a results file costs about 1.5 ms of CPU however few rows it holds (its footer describes
# each of ~57 columns), and converting it to pandas on its own three times that: 10,000 runs read
# file by file and concatenated by pandas took over a minute. So each file is read into Arrow only
# (in threads: the decoding releases the GIL), the tables are concatenated by Arrow, their types
# unified (`_combined_table`), and converted to pandas once. That still opens
# every file, so a store of INDEX_MIN_FILES files or more keeps an index: one Parquet file in the
# cache folder holding the rows of every results file read, each file keyed by its size,
# modification time and inode (a run's file is rewritten by a rename, which gives a new inode), and
# its schema; a load then reads only new or changed files. The index is a cache: a damaged one, or
# a cache folder that cannot be written, costs time only, and the store itself is never written.
INDEX_MIN_FILES = 256
INDEX_FORMAT = 1
_INDEX_KEY = b"yukti.store_index"
_FILE_COLUMN = "__yukti_store_file__"  # in the index (and while combining): the file a row came from
_READ_THREADS = 8


@dataclass(frozen=True)
class _FileRead:
    """One results file as read: its rows (a pyarrow.Table; None when skipped, for `reason`) and
    its (size, mtime_ns, inode, rows), taken from the open file the rows were read from."""

    table: object
    reason: str
    entry: tuple[int, int, int, int] | None = None
    schema: bytes = b""  # the table's schema, serialized: files of one schema are combined without unifying


class _NeedsPandas(Exception):
    """Arrow cannot combine the files' tables, or pandas cannot take the result."""


def _results_files(folder: Path) -> list[tuple[Path, tuple[int, int, int] | None]]:
    """The results files of `folder` by name, oldest run first (curves side files left out), each
    with its (size, mtime_ns, inode), None for one that is not a regular file."""
    found = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.endswith(".parquet") or curves.is_curves_file(entry.name):  # a run's curves: yukti.curves
                continue
            try:
                info = entry.stat()  # follows links, as Path.is_file does
                key = (info.st_size, info.st_mtime_ns, info.st_ino) if S_ISREG(info.st_mode) else None
            except OSError:
                key = None
            found.append((Path(entry.path), key))
    return sorted(found, key=lambda item: item[0])


def _read_many(paths: list[Path]) -> list[_FileRead]:
    if len(paths) < 2 * _READ_THREADS:
        return [_read_results_table(path) for path in paths]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(_READ_THREADS, os.cpu_count() or 1)) as pool:
        return list(pool.map(_read_results_table, paths))


_OPEN_FAILED = re.compile(r"^Could not open Parquet input source '[^']*': ")


def _read_results_table(path: Path) -> _FileRead:
    """A results file's rows as Arrow, the timestamp in UTC, or why it is not a results file.
    Reads the file once."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return _FileRead(None, "not a regular file")
    try:
        with open(path, "rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read()
        table = pq.ParquetFile(pa.BufferReader(data)).read(use_threads=False)
    except Exception as exc:  # noqa: BLE001 - whatever the bytes are, one bad file must not break the store
        detail = _OPEN_FAILED.sub("", _first_line(exc))  # the path is named already
        return _FileRead(None, f"not a readable Parquet file ({type(exc).__name__}: {detail})")
    missing = [c for c in IDENTITY_COLUMNS if c not in table.column_names]
    if missing:
        return _FileRead(None, f"not a Yukti results file: no column(s) {', '.join(missing)}")
    try:
        table = _utc_timestamps(table)
    except Exception as exc:  # noqa: BLE001 - valid Parquet holding a timestamp pandas cannot read
        return _FileRead(None, f"unreadable contents ({type(exc).__name__}: {_first_line(exc)})")
    return _FileRead(table, "", (info.st_size, info.st_mtime_ns, info.st_ino, table.num_rows), _schema_bytes(table.schema))


def _utc_timestamps(table):  # pyarrow.Table -> pyarrow.Table
    """The timestamp column as UTC timestamps: naive ones taken as UTC, text parsed by pandas."""
    import pyarrow as pa

    i = table.schema.get_field_index("timestamp")
    if i < 0:
        return table
    kind = table.schema.field(i).type
    if pa.types.is_null(kind) or (pa.types.is_timestamp(kind) and kind.tz == "UTC"):
        return table
    if pa.types.is_timestamp(kind):  # Arrow keeps instants in UTC whatever the zone: only the label changes
        column = table.column(i).cast(pa.timestamp(kind.unit, "UTC"))
    else:
        column = pa.array(pd.to_datetime(table.column(i).to_pandas(), utc=True))
    return table.set_column(i, "timestamp", column)


def _schema_bytes(schema) -> bytes:  # pyarrow.Schema
    return schema.remove_metadata().serialize().to_pybytes()


def _combined_table(paths: list[Path], known: dict[Path, tuple[tuple[int, ...], bytes]],
                    fresh: dict[Path, _FileRead], index: "_StoreIndex | None"):  # -> pyarrow.Table | None
    """The rows of every file read (the index's `known` ones and the `fresh` ones), in file order,
    with _FILE_COLUMN; None when no file was read. The columns are those pandas' concatenation of
    the files gave: the union of the non-empty files' columns in order of appearance (an empty file
    adds none). Types are unified as Arrow does: integers and floats give floats, a column all
    empty in a file takes the other files' type (pandas made such columns object). Raises
    _NeedsPandas for types Arrow does not unify (text in one file, numbers in another)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    read = [p for p in paths if p in known or fresh[p].table is not None]
    if not read:
        return None
    filled = [p for p in read if (known[p][0][3] if p in known else fresh[p].table.num_rows)]
    if not filled:  # only empty runs: the first one's columns
        table = fresh[read[0]].table if read[0] in fresh else _read_results_table(read[0]).table
        if table is None:  # changed since the index was written
            raise _NeedsPandas
        return table.replace_schema_metadata(None).append_column(_FILE_COLUMN, pa.array([], pa.string()))
    schemas = dict.fromkeys(known[p][1] if p in known else fresh[p].schema for p in filled)
    new = [p for p in filled if p not in known]
    held = [p for p in filled if p in known]
    try:
        target = pa.unify_schemas([pa.ipc.read_schema(pa.py_buffer(s)) for s in schemas], promote_options="permissive")
        parts = []
        if held:
            rows = index.table
            if len(known) < len(index.files):  # some indexed files are gone or changed
                names = pa.array([p.name for p in known], pa.string())
                rows = rows.filter(pc.is_in(rows.column(_FILE_COLUMN), value_set=names))
            # The index's columns may include a file's that is gone, its types wider than needed now.
            parts.append(_conform_table(rows, target.append(pa.field(_FILE_COLUMN, pa.string()))))
        if new:
            wanted = _schema_bytes(target)
            tables = [fresh[p].table if fresh[p].schema == wanted else _conform_table(fresh[p].table, target) for p in new]
            files = np.repeat(np.array([p.name for p in new], dtype=object), [t.num_rows for t in tables])
            rows = pa.concat_tables(tables).replace_schema_metadata(None)  # one schema: no unification per file
            parts.append(rows.append_column(_FILE_COLUMN, pa.array(files, pa.string())))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise _NeedsPandas from exc
    # One chunk per file would make every later step (sorting, pandas, writing the index) slow.
    table = (pa.concat_tables(parts) if len(parts) > 1 else parts[0]).combine_chunks()
    if held and new and held[-1] > new[0]:  # a changed file among older ones: back in file order
        table = table.sort_by(_FILE_COLUMN)  # stable: a file's rows keep their order
    return table


def _conform_table(table, schema):  # (pyarrow.Table, pyarrow.Schema) -> pyarrow.Table
    """`table` with exactly the columns of `schema`, in its order and types (missing ones null)."""
    import pyarrow as pa

    if table.schema.remove_metadata().equals(schema):
        return table.replace_schema_metadata(None)
    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names
               else pa.chunked_array([pa.nulls(table.num_rows, f.type)]) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _arrow_to_pandas(table) -> pd.DataFrame:  # pyarrow.Table
    try:
        return table.drop_columns([_FILE_COLUMN]).to_pandas()
    except Exception as exc:  # noqa: BLE001 - a column pandas cannot take: find its file, file by file
        raise _NeedsPandas from exc


def _frame_file_by_file(paths: list[Path], known: dict[Path, tuple[tuple[int, ...], bytes]],
                        fresh: dict[Path, _FileRead]) -> pd.DataFrame | None:
    """Every file converted to pandas on its own, then concatenated by pandas. Files the index held
    are read again (`known` is emptied); one pandas cannot take is marked skipped in `fresh`."""
    for path in known:
        fresh[path] = _read_results_table(path)
    known.clear()
    frames = []
    for path in paths:
        if fresh[path].table is None:
            continue
        try:
            frames.append(fresh[path].table.to_pandas())
        except Exception as exc:  # noqa: BLE001 - valid Parquet holding contents pandas cannot take
            fresh[path] = _FileRead(None, f"unreadable contents ({type(exc).__name__}: {_first_line(exc)})")
    if not frames:
        return None
    filled = [f for f in frames if len(f)]  # all-NA columns of empty runs would change dtypes for nothing
    return pd.concat(filled, ignore_index=True) if filled else frames[0]


@dataclass(frozen=True)
class _StoreIndex:
    """A store's rows as last read (one pyarrow.Table with _FILE_COLUMN), and for each file they
    came from its (size, mtime_ns, inode, rows, schema number), `schemas` holding the schemas."""

    table: object
    files: dict[str, tuple[int, int, int, int, int]]
    schemas: list[bytes]

    @classmethod
    def load(cls, folder: Path) -> "_StoreIndex | None":
        import base64

        import pyarrow.parquet as pq

        try:
            table = pq.read_table(index_path(folder))
            meta = json.loads(table.schema.metadata[_INDEX_KEY])
            files = {name: tuple(int(v) for v in entry) for name, entry in meta["files"].items()}
            schemas = [base64.b64decode(s) for s in meta["schemas"]]
            consistent = (meta["format"] == INDEX_FORMAT and meta["store"] == str(folder.resolve())
                          and _FILE_COLUMN in table.column_names and table.num_rows == sum(e[3] for e in files.values())
                          and all(0 <= e[4] < len(schemas) for e in files.values()))
        except Exception:  # noqa: BLE001 - missing, damaged or foreign: the files are read instead
            return None
        return cls(table.replace_schema_metadata(None), files, schemas) if consistent else None

    def unchanged(self, listing: list[tuple[Path, tuple[int, int, int] | None]],
                  exclude: dict[Path, object]) -> dict[Path, tuple[tuple[int, ...], bytes]]:
        """The listed files the index holds as they are now: path -> (entry, schema)."""
        held = {}
        for path, key in listing:
            entry = self.files.get(path.name)
            if entry is not None and key is not None and entry[:3] == key and path not in exclude:
                held[path] = (entry, self.schemas[entry[4]])
        return held

    @staticmethod
    def save(folder: Path, table, read: list[Path], known: dict[Path, tuple[tuple[int, ...], bytes]],
             fresh: dict[Path, _FileRead], previous: "_StoreIndex | None") -> None:
        """Write the index of `folder` (`table`: the rows of the files `read`) unless it is unchanged;
        never fails the load."""
        import base64

        import pyarrow.parquet as pq

        if previous is not None and len(known) == len(read) == len(previous.files):
            return  # every file came from the index
        schemas: dict[bytes, int] = {}
        files = {}
        for path in read:
            entry, schema = known[path] if path in known else (fresh[path].entry, fresh[path].schema)
            files[path.name] = (*entry[:4], schemas.setdefault(schema, len(schemas)))
        meta = {"format": INDEX_FORMAT, "store": str(folder.resolve()), "files": files,
                "schemas": [base64.b64encode(s).decode() for s in schemas]}
        try:
            buffer = io.BytesIO()
            pq.write_table(table.replace_schema_metadata({_INDEX_KEY: json.dumps(meta).encode()}), buffer)
            target = index_path(folder)
            atomic_write_bytes(target, buffer.getvalue())
            _prune_indexes(target.parent)
        except Exception:  # noqa: BLE001 - a read-only or full cache folder: the next load reads the files again
            pass


def _prune_indexes(index_folder: Path) -> None:
    """Remove the indexes of stores that no longer exist, and temp files of killed index writers."""
    import pyarrow.parquet as pq

    now = time.time()
    for path in index_folder.iterdir():
        try:
            if path.name.endswith(".tmp"):
                if now - path.stat().st_mtime > STALE_TMP_AGE_S:
                    path.unlink()
            elif not Path(json.loads(pq.read_schema(path).metadata[_INDEX_KEY])["store"]).is_dir():
                path.unlink()
        except Exception:  # noqa: BLE001 - being replaced by another reader, or not an index: left alone
            continue


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _tidy(folder: Path, stale_tmp_age_s: float) -> tuple[list[Path], list[SkippedFile], dict[Path, _FileRead]]:
    recovered: list[Path] = []
    removed: list[SkippedFile] = []
    already_read: dict[Path, _FileRead] = {}
    now = time.time()
    for leftover in sorted(folder.glob(".*.tmp")):
        match = _LEFTOVER.match(leftover.name)
        if match is None:
            continue
        try:
            if now - leftover.stat().st_mtime < stale_tmp_age_s:
                continue  # possibly a writer between its write and its rename
            if curves.is_curves_file(match["name"]):
                read, (rows, reason) = None, curves.read_file(leftover)
            else:
                read = _read_results_table(leftover)
                rows, reason = read.table, read.reason
            if rows is None:
                leftover.unlink()
                removed.append(SkippedFile(leftover, reason))
            else:
                # The leftover is the newest version of its run's file (a writer removes its temp file
                # on every failure but a kill), so it replaces an older version of the same name.
                target = folder / match["name"]
                os.replace(leftover, target)  # keeps size, mtime and inode: `read.entry` holds for the target
                recovered.append(target)
                if read is not None:
                    already_read[target] = read
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
