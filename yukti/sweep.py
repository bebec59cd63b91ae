"""Sweeps: a grid of models x backends x batch sizes x threads x backend options x datasets, run as
Dask tasks, every cell's row stored in the results store as it finishes.

The spec is a TOML file (`yukti sweep SPEC.toml`, or `yukti.sweep("SPEC.toml")`):

    name = "jets-2026"            # optional; default: the spec file's stem. --resume is scoped to it.
    models = ["jet_dnn", "models/tagger.onnx"]   # zoo names or .onnx paths (relative to the spec file)
    backends = ["cpp", "onnxruntime", "torch"]
    batch_sizes = [1, 64, 1024]
    threads = [1]                 # optional, default [1]: one grid axis for every backend
    datasets = ["jets_synthetic"] # optional; default: each model's own data. A table file needs `target`.
    target = "label"              # optional: the label column of a table file in `datasets`
    eval_samples = 20000          # optional: samples of the accuracy comparison (yukti.benchmark)
    [options.fixed]               # per-backend options: a list is an axis of the grid, a scalar is fixed
    precision = ["ap_fixed<16,6>", "ap_fixed<10,4,AP_RND,AP_SAT>"]
    [options.cpp]
    extra_flags = [[], ["-funroll-loops"]]   # an option whose value is a list: a list of lists is an axis
    [timing]                      # optional: yukti.TimingPolicy fields
    time_budget_s = 0.5

The grid expands to cells: model x backend x batch size x threads x (the product of that backend's
option axes) x dataset. Every mistake in the spec is found before any cell runs and raised as a
SpecError naming the file and the line (malformed TOML, an unknown key, model, backend, option or
dataset, a bad option value, options for a backend the grid does not measure, an empty list, batch
sizes or threads that are not integers >= 1). Threads are the grid's own axis (they are also what a
cell reserves), so `threads` is refused among a backend's options.

A cell's identity (the `cell` column) is a short hash of the sweep name, the model's name and
content hash, the backend, its options as `Runner.resolve_options` resolves them, the batch size,
the threads and the dataset. Each cell is one Dask task: the worker loads the model, runs
`yukti.benchmark` for that one configuration and writes its row (with the worker's host fingerprint
and the `sweep` and `cell` columns) atomically to `<store>/sweep-<name>-<cell>.parquet`: a cell run
again overwrites its file, never adds a second one. The store must therefore be a folder every worker
reaches at the same path (a shared filesystem), and so must .onnx and table files of the spec.

`resume=True` (`--resume`) skips every cell whose file is in the store with a status other than
"error"; cells that ended in error are run again.

Cluster: by default a `distributed.LocalCluster` of worker processes sized to this machine: each
worker runs one cell at a time and offers a `cores` resource equal to the largest `threads` of the
grid, with `physical cores // that` workers (`workers=` overrides the count). Every cell asks for
`cores` equal to its threads, so the scheduler never puts two measurements on the same cores of a
host. One cell per worker process also keeps two timing loops from sharing a GIL and process-wide
thread pools (torch's). `scheduler="tcp://HOST:PORT"` (or a scheduler file) runs the sweep on an
existing cluster instead; its workers must offer the resource and should run one task at a time:

    dask scheduler --scheduler-file /shared/sched.json
    dask worker --scheduler-file /shared/sched.json --nthreads 1 --resources cores=1   # on each node

On a batch system, dask-jobqueue starts such workers as jobs (one worker per job; the cache and the
store on a shared filesystem):

    from dask_jobqueue import SLURMCluster      # HTCondorCluster(cores=1, memory="4GB", disk="4GB", ...) alike
    cluster = SLURMCluster(cores=1, processes=1, memory="4GB", walltime="02:00:00",
                           worker_extra_args=["--resources", "cores=1"],
                           job_script_prologue=["export YUKTI_CACHE_DIR=/shared/yukti-cache"])
    cluster.scale(jobs=20)
    yukti.sweep("grid.toml", scheduler=cluster.scheduler_address, store="/shared/yukti-results")

Fault tolerance: a worker killed while measuring loses only that cell. A cell is run again once after
its worker died or it raised, then recorded as a row with status "error" and the reason (e.g. "worker
died twice while measuring (KilledWorker: ...)"), written by the client into the same cell file.
Runs are counted by the cells themselves (each run logs its start, and its outcome once stored, as
events on the scheduler), so a cell that was only waiting on a dead worker is not charged, an external
scheduler's own retries (`distributed.scheduler.allowed-failures`) count too, and a cell whose result
was lost with its worker after it was stored is not measured again. Ctrl-C cancels what has not run, closes the
cluster and raises SweepInterrupted (a KeyboardInterrupt) saying how many cells are stored and how
many remain: every finished cell stays stored and `resume=True` continues.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import math
import os
import re
import time
import traceback
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from yukti import environment, results, validation
from yukti.engine import TimingPolicy
from yukti.errors import InputError, YuktiError

log = logging.getLogger(__name__)

# What the spec may say at its top level (besides the [options.*] and [timing] tables).
SPEC_KEYS = ("name", "models", "backends", "batch_sizes", "threads", "datasets", "target", "eval_samples", "options", "timing")
REQUIRED_KEYS = ("models", "backends", "batch_sizes")
# A cell is given up after it started this many times without finishing (its first run and one retry).
MAX_STARTS = 2
# ...and after this many submissions whatever the count says: a worker killed before the start of a
# cell reached the scheduler would otherwise let the cell be resubmitted for ever.
MAX_SUBMISSIONS = 4
# How long to wait for the first worker of an external cluster (jobs of a batch system start late).
WORKER_WAIT_S = 30.0
# Exit status of `yukti sweep` after Ctrl-C: 128 + SIGINT, as shells report it.
INTERRUPTED_EXIT_CODE = 130
# Columns of the frame `sweep` returns: one row per cell.
SUMMARY_COLUMNS = ["cell", "model", "backend", "batch_size", "threads", "options", "dataset", "status", "error",
                   "attempts", "ran", "host", "latency_p50_us", "throughput_per_s", "file"]


class SpecError(InputError):
    """A sweep spec that cannot run: `path` and `line` (1-based, None when unknown) say where."""

    def __init__(self, message: str, *, path: Path | None = None, line: int | None = None) -> None:
        where = f"{path if path is not None else 'sweep spec'}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {message}")
        self.path, self.line, self.reason = path, line, message


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep: `result` holds what `sweep` would have returned (cells not run say "not run")."""

    def __init__(self, message: str, result: pd.DataFrame) -> None:
        super().__init__(message)
        self.result = result


class CellGivenUp(YuktiError, RuntimeError):
    """Raised by a cell that finds it has already started MAX_STARTS times (its workers died)."""


# -- the spec ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One measurement of the grid. `model` and `dataset` are what a worker loads (a zoo or dataset
    name, or an absolute path); `options` is what the spec gives the backend, `resolved` the reuse
    key (`Runner.resolve_options`)."""

    key: str
    model: str
    model_name: str
    model_hash: str | None
    backend: str
    options: dict[str, Any]
    resolved: dict[str, Any]
    batch_size: int
    threads: int
    dataset: str | None = None  # None: the model's own data
    dataset_label: str | None = None  # as the spec writes it
    target: str | None = None

    def file_name(self, sweep: str) -> str:
        return f"sweep-{file_safe(sweep)}-{self.key}.parquet"


@dataclass(frozen=True)
class Spec:
    """A validated, expanded sweep spec."""

    name: str
    cells: tuple[Cell, ...]
    policy: TimingPolicy = field(default_factory=TimingPolicy)
    eval_samples: int = 20_000
    path: Path | None = None

    @property
    def max_threads(self) -> int:
        return max((c.threads for c in self.cells), default=1)


def file_safe(name: str) -> str:
    """`name` as part of a file name: letters, digits, `.`, `_`, `-` only, bounded."""
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:64]
    return text or "sweep"


def cell_key(parts: Mapping[str, Any]) -> str:
    """A short stable hash of a cell's identity (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


_HEADER = re.compile(r"^\s*\[(?!\[)\s*(?P<name>[^\[\]]+?)\s*\]\s*(#.*)?$")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'')


class _Lines:
    """Where a key or a value of the spec is written: its 1-based line, found by scanning the text.
    Tables (`[options.fixed]`), dotted keys (`fixed.precision = ...` under `[options]`) and values in
    multi-line arrays are found; anything else falls back to the line of the nearest enclosing key."""

    def __init__(self, text: str | None) -> None:
        self.lines = text.splitlines() if text else []
        self.headers = []  # (line index, table path)
        for i, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if match:
                self.headers.append((i, tuple(part.strip().strip("\"'") for part in match["name"].split("."))))

    def _section(self, table: tuple[str, ...]) -> tuple[int, int] | None:
        if not table:
            return 0, self.headers[0][0] if self.headers else len(self.lines)
        for n, (i, name) in enumerate(self.headers):
            if name == table:
                return i + 1, self.headers[n + 1][0] if n + 1 < len(self.headers) else len(self.lines)
        return None

    def _key_index(self, path: tuple[str, ...]) -> int | None:
        for split in range(len(path) - 1, -1, -1):
            section = self._section(path[:split])
            if section is None:
                continue
            dotted = r"\s*\.\s*".join(rf"(?:{re.escape(p)}|\"{re.escape(p)}\"|'{re.escape(p)}')" for p in path[split:])
            pattern = re.compile(rf"^\s*{dotted}\s*=")
            for i in range(*section):
                if pattern.match(self.lines[i]):
                    return i
        return None

    def key(self, *path: str) -> int | None:
        """The line of key `path` (a table's header line for a table), or of its nearest enclosing key."""
        for end in range(len(path), 0, -1):
            index = self._key_index(path[:end])
            if index is None:
                for i, name in self.headers:
                    if name == path[:end]:
                        return i + 1
                continue
            return index + 1
        return None

    def value(self, path: tuple[str, ...], value: Any) -> int | None:
        """The line where `value` is written in the array of key `path` (the key's line otherwise)."""
        start = self._key_index(path)
        if start is None:
            return self.key(*path)
        if isinstance(value, str):
            token = re.compile(rf"(\"|'){re.escape(value)}\1")
        elif isinstance(value, bool):
            token = re.compile(rf"(?<![\w.]){'true' if value else 'false'}(?![\w.])")
        elif isinstance(value, (int, float)):
            token = re.compile(rf"(?<![\w.+-]){re.escape(str(value))}(?![\w.])")
        else:
            return start + 1
        depth = 0
        for i in range(start, len(self.lines)):
            line = _without_comment(self.lines[i])
            line = line.split("=", 1)[1] if i == start and "=" in line else line
            if token.search(line):
                return i + 1
            bare = _STRINGS.sub("", line)
            depth += bare.count("[") - bare.count("]")
            if depth <= 0:
                break
        return start + 1


def _without_comment(line: str) -> str:
    """`line` up to its comment (a `#` outside strings)."""
    masked = _STRINGS.sub(lambda m: "_" * len(m[0]), line)
    return line[:masked.index("#")] if "#" in masked else line


class _Check:
    """Raises SpecError with the file and the line of the offending entry."""

    def __init__(self, path: Path | None, lines: _Lines) -> None:
        self.path, self.lines = path, lines

    def fail(self, message: str, *, key: tuple[str, ...] = (), value: Any = None, has_value: bool = False) -> SpecError:
        line = self.lines.value(key, value) if has_value else self.lines.key(*key) if key else None
        return SpecError(message, path=self.path, line=line)

    def axis(self, data: Mapping[str, Any], key: str, default: list[Any] | None = None) -> list[Any]:
        """A top-level list (a scalar is a list of one); a missing or empty one is refused."""
        if key not in data:
            if default is None:
                raise self.fail(f"missing key {key!r}: the grid needs {', '.join(REQUIRED_KEYS)}")
            return list(default)
        value = data[key]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if not values:
            raise self.fail(f"{key} is an empty list: the grid would have no cells", key=(key,))
        return values

    def unique(self, key: str, values: list[Any]) -> list[Any]:
        for i, item in enumerate(values):
            if item in values[:i]:
                raise self.fail(f"{key} lists {item!r} twice", key=(key,), value=item, has_value=True)
        return values

    def positive_ints(self, data: Mapping[str, Any], key: str, default: list[int] | None = None) -> list[int]:
        values = self.axis(data, key, default)
        for item in values:
            if isinstance(item, bool) or not isinstance(item, int) or item < 1:
                raise self.fail(f"{key} must be integers >= 1; got {item!r}", key=(key,), value=item, has_value=True)
        return self.unique(key, values)

    def strings(self, data: Mapping[str, Any], key: str, default: list[Any] | None = None) -> list[Any]:
        values = self.axis(data, key, default)
        for item in values:
            if item is not None and (not isinstance(item, str) or not item):
                raise self.fail(f"{key} must be non-empty strings; got {item!r}", key=(key,), value=item, has_value=True)
        return self.unique(key, values)


def _parse(spec: str | os.PathLike | Mapping[str, Any]) -> tuple[dict[str, Any], Path | None, str | None]:
    if isinstance(spec, Mapping):
        return dict(spec), None, None
    path = Path(spec)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read the sweep spec ({type(exc).__name__}: {exc})", path=path) from None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(text), path, text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        where = re.search(r"\(at line (\d+), column (\d+)\)", message)
        line = int(where[1]) if where else (len(text.splitlines()) or None) if "end of document" in message else None
        raise SpecError(f"malformed TOML: {message}", path=path, line=line) from None


def load_spec(spec: str | os.PathLike | Mapping[str, Any]) -> Spec:
    """Read, validate and expand a sweep spec: a TOML file, or the same content as a mapping (relative
    paths then start at the working directory, and errors name no line). Loads each model once (its
    content hash is part of every cell's identity); trains a zoo model not trained yet."""
    from yukti import datasets, registry, zoo

    data, path, text = _parse(spec)
    check = _Check(path, _Lines(text))
    base = path.parent if path is not None else Path.cwd()
    for key in data:
        if key not in SPEC_KEYS:
            raise check.fail(f"unknown key {key!r}; a sweep spec has {', '.join(SPEC_KEYS)}", key=(key,))

    name = data.get("name", path.stem if path is not None else "sweep")
    if not isinstance(name, str) or not name.strip():
        raise check.fail(f"name must be a non-empty string; got {name!r}", key=("name",))

    models = check.strings(data, "models")
    model_refs: dict[str, str] = {}
    for model in models:
        if model in zoo.names():
            model_refs[model] = model
        elif model.lower().endswith(".onnx"):
            file = (base / model).resolve()
            if not file.is_file():
                raise check.fail(f"model {model!r}: no ONNX file at {file}", key=("models",), value=model, has_value=True)
            model_refs[model] = str(file)
        else:
            raise check.fail(f"unknown model {model!r}: not a zoo model ({', '.join(zoo.names())}) and not an .onnx path",
                             key=("models",), value=model, has_value=True)

    backends = check.strings(data, "backends")
    known = registry.names()
    for backend in backends:
        if backend not in known:
            raise check.fail(f"unknown backend {backend!r}; registered backends are {known}", key=("backends",),
                             value=backend, has_value=True)
    batch_sizes = check.positive_ints(data, "batch_sizes")
    threads = check.positive_ints(data, "threads", [1])

    target = data.get("target")
    if target is not None and (not isinstance(target, str) or not target):
        raise check.fail(f"target must be a column name; got {target!r}", key=("target",))
    dataset_refs: dict[str | None, str | None] = {}
    for dataset in check.strings(data, "datasets", [None]):
        if dataset is None or dataset in datasets.names():
            dataset_refs[dataset] = dataset
        elif Path(dataset).suffix.lower() in datasets._TABLE_SUFFIXES:
            file = (base / dataset).resolve()
            if not file.is_file():
                raise check.fail(f"dataset {dataset!r}: no table file at {file}", key=("datasets",), value=dataset, has_value=True)
            if target is None:
                raise check.fail(f"dataset {dataset!r} is a table file: the spec needs target = \"LABEL COLUMN\"",
                                 key=("datasets",), value=dataset, has_value=True)
            dataset_refs[dataset] = str(file)
        else:
            raise check.fail(f"unknown dataset {dataset!r}; known datasets are {datasets.names()}, or a table file "
                             f"({', '.join(datasets._TABLE_SUFFIXES)})", key=("datasets",), value=dataset, has_value=True)
    if target is not None and not any(ref is not None and ref not in datasets.names() for ref in dataset_refs.values()):
        raise check.fail("target names the label column of a table file in datasets, and datasets has none", key=("target",))

    eval_samples = data.get("eval_samples", 20_000)
    if isinstance(eval_samples, bool) or not isinstance(eval_samples, int) or eval_samples < 1:
        raise check.fail(f"eval_samples must be an integer >= 1; got {eval_samples!r}", key=("eval_samples",))
    policy = _policy(data.get("timing", {}), check)
    option_grids = _option_grids(data.get("options", {}), backends, threads, check)

    loaded = {}
    for model, ref in model_refs.items():
        try:
            loaded[model] = _load_model(ref)
        except YuktiError as exc:
            raise check.fail(f"model {model!r} cannot be loaded: {exc}", key=("models",), value=model, has_value=True) from None

    cells: dict[str, Cell] = {}  # two spellings of the same options are one cell
    for model, backend, batch, n_threads, dataset in itertools.product(models, backends, batch_sizes, threads, dataset_refs):
        m = loaded[model]
        for given in option_grids[backend]:
            resolved = _resolve(backend, given, n_threads, check)
            table = dataset_refs[dataset] is not None and dataset_refs[dataset] not in datasets.names()
            identity = {"sweep": name, "model": m.name, "model_hash": m.hash if m.has_onnx else None, "backend": backend,
                        "options": resolved, "batch_size": batch, "threads": n_threads, "dataset": dataset,
                        "target": target if table else None}
            key = cell_key(identity)
            cells.setdefault(key, Cell(key, model_refs[model], m.name, identity["model_hash"], backend, given, resolved,
                                       batch, n_threads, dataset_refs[dataset], dataset, identity["target"]))
    return Spec(name, tuple(cells.values()), policy, eval_samples, path)


def _policy(timing: Any, check: _Check) -> TimingPolicy:
    if not isinstance(timing, Mapping):
        raise check.fail("timing must be a table ([timing]) of yukti.TimingPolicy fields", key=("timing",))
    allowed = [f.name for f in fields(TimingPolicy)]
    for key, value in timing.items():
        if key not in allowed:
            raise check.fail(f"unknown timing key {key!r}; [timing] takes {', '.join(allowed)}", key=("timing", key))
        try:
            TimingPolicy(**{key: value})
        except InputError as exc:
            raise check.fail(f"timing: {exc}", key=("timing", key)) from None
    try:
        return TimingPolicy(**timing)
    except InputError as exc:  # pragma: no cover - every field is checked alone above
        raise check.fail(f"timing: {exc}", key=("timing",)) from None


def _list_valued(option: Any) -> bool:
    """An option whose value is itself a list (compiler flags, providers): a list of lists is its axis."""
    kinds = option.type if isinstance(option.type, tuple) else (option.type,)
    return isinstance(option.default, (list, tuple)) or any(k in (list, tuple) for k in kinds)


def _option_grids(options: Any, backends: list[str], threads: list[int], check: _Check) -> dict[str, list[dict[str, Any]]]:
    """Per backend, every combination of its option axes ([{}] for a backend without options)."""
    from yukti import registry

    if not isinstance(options, Mapping):
        raise check.fail("options must be tables, one per backend ([options.BACKEND])", key=("options",))
    grids: dict[str, list[dict[str, Any]]] = {backend: [{}] for backend in backends}
    for backend, given in options.items():
        where = ("options", backend)
        if backend not in backends:
            raise check.fail(f"options given for backend {backend!r}, which backends does not list ({backends})", key=where)
        if not isinstance(given, Mapping):
            raise check.fail(f"options.{backend} must be a table of option = value (or = [values])", key=where)
        try:
            cls = registry.runner_class(backend)
        except Exception as exc:  # noqa: BLE001 - a broken plugin: its options cannot be checked here
            raise check.fail(f"backend {backend!r} cannot be loaded to check its options: {type(exc).__name__}: {exc}",
                             key=where) from None
        axes = []
        for name, value in given.items():
            key = (*where, name)
            if name == "threads":
                raise check.fail("threads is the grid's own axis (the cores a cell reserves): set it with the "
                                 "top-level threads = [...]", key=key)
            option = cls.options.get(name) or cls.common_options.get(name)
            nested = option is not None and _list_valued(option)
            is_axis = isinstance(value, list) and (not nested or (value and all(isinstance(v, list) for v in value)))
            values = value if is_axis else [value]
            if not values:
                raise check.fail(f"options.{backend}.{name} is an empty list: the grid would have no cells", key=key)
            for item in values:
                try:
                    cls.resolve_options({name: item})
                except YuktiError as exc:
                    raise check.fail(str(exc), key=key, value=item, has_value=True) from None
            axes.append([(name, item) for item in values])
        grids[backend] = [dict(combo) for combo in itertools.product(*axes)]
        for combo in grids[backend]:
            for n in threads:
                _resolve(backend, combo, n, check)
    return grids


def _resolve(backend: str, given: dict[str, Any], threads: int, check: _Check) -> dict[str, Any]:
    from yukti import registry

    try:
        return registry.runner_class(backend).resolve_options(given, threads=threads)
    except YuktiError as exc:
        raise check.fail(str(exc), key=("options", backend)) from None


# -- what a worker runs -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _load_model(ref: str, threads: int | None = None) -> Any:
    """A model by zoo name or path, kept: a worker measures the same few models cell after cell."""
    from yukti.engine import resolve_model

    return resolve_model(ref, threads=threads)


@functools.lru_cache(maxsize=8)
def _load_dataset(ref: str, target: str | None) -> Any:
    from yukti import datasets

    return datasets.as_dataset(ref, target=target)


def cell_events(client: Any, topic: str) -> tuple[int, dict[str, Any] | None]:
    """(how many runs of a cell started, the outcome of one that finished or None), from the events its
    runs log under `topic` on the scheduler."""
    starts, outcome = 0, None
    for _, message in client.get_events(topic):
        if isinstance(message, dict) and message.get("event") == "start":
            starts += 1
        elif isinstance(message, dict) and message.get("event") == "done":
            outcome = message.get("outcome")
    return starts, outcome


def _worker_client() -> Any:
    """A client of the scheduler from inside a Dask task; None outside a worker (a cell called directly)."""
    try:
        from distributed import get_client, get_worker

        get_worker()
    except (ImportError, ValueError):
        return None
    return get_client()


def run_cell(cell: Cell, store: str, sweep: str, policy: TimingPolicy, eval_samples: int, topic: str = "") -> dict[str, Any]:
    """Measure one cell and write its row to `<store>/<cell file>` (atomically); returns a summary.
    What each Dask task of a sweep runs.

    With `topic`, each run logs its start and its outcome there (synchronously: a worker's own event
    stream is sent in batches and a crash right after would lose it). A run that finds an outcome
    returns it without measuring again (Dask recomputes a task whose result was lost with its worker);
    one that finds MAX_STARTS earlier runs started without an outcome raises CellGivenUp."""
    from yukti.engine import benchmark

    client = _worker_client() if topic else None
    starts = 0
    if client is not None:
        starts, done = cell_events(client, topic)
        if done is not None:
            return done
        if starts >= MAX_STARTS:  # an external scheduler rerunning a cell whose workers died
            raise CellGivenUp(f"worker died while measuring: started {_times(starts)}, never finished")
        client.log_event(topic, {"event": "start"})
    model = _load_model(cell.model, cell.threads)
    data = _load_dataset(cell.dataset, cell.target) if cell.dataset is not None else None
    frame = benchmark(model, backends=[cell.backend], batch_sizes=[cell.batch_size], threads=cell.threads,
                      options={cell.backend: dict(cell.options)} if cell.options else None, data=data, policy=policy,
                      max_eval_samples=eval_samples, store=False, target=cell.target)
    frame = frame.drop(columns=[c for c in results.DERIVED_COLUMNS if c in frame.columns])  # derived when read
    frame["sweep"], frame["cell"] = sweep, cell.key
    path = results.write_run(frame, Path(store) / cell.file_name(sweep))
    row = frame.iloc[0]
    outcome = {"status": str(row["status"]), "error": _text(row["error"]), "attempts": starts + 1, "host": _text(row["host"]),
               "latency_p50_us": _number(row.get("latency_p50_us")), "throughput_per_s": _number(row.get("throughput_per_s")),
               "file": str(path)}
    if client is not None:
        client.log_event(topic, {"event": "done", "outcome": outcome})
    return outcome


def _text(value: Any) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _times(n: int) -> str:
    return {1: "once", 2: "twice"}.get(n, f"{n} times")


# -- the client -------------------------------------------------------------------------------------


def _stored(cell: Cell, folder: Path, sweep: str, *, errors: bool = False) -> dict[str, Any] | None:
    """The summary of a cell already stored with a status other than "error" (any status with
    `errors`); None otherwise."""
    path = folder / cell.file_name(sweep)
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - an unreadable file is a cell to run again
        return None
    if frame.empty or "status" not in frame or (not errors and (frame["status"] == "error").any()):
        return None
    if "cell" in frame and not (frame["cell"] == cell.key).all():
        return None
    row = frame.iloc[0]
    return {"status": str(row["status"]), "error": _text(row.get("error")), "attempts": 0, "ran": False,
            "host": _text(row.get("host")), "latency_p50_us": _number(row.get("latency_p50_us")),
            "throughput_per_s": _number(row.get("throughput_per_s")), "file": str(path)}


def _error_frame(spec: Spec, cell: Cell, reason: str) -> pd.DataFrame:
    """The row of a cell given up: what it was to measure, status "error" and why."""
    return pd.DataFrame([{
        "run_id": uuid.uuid4().hex[:12], "sweep": spec.name, "cell": cell.key, "model": cell.model_name,
        "model_hash": cell.model_hash, "backend": cell.backend, "options": cell.resolved, "status": "error", "error": reason,
        "batch_size": cell.batch_size, "threads": cell.threads, "dataset": cell.dataset_label,
        "timestamp": pd.Timestamp.now(tz="UTC"),
    }])


def _describe_failure(exc: BaseException, starts: int) -> str:
    from distributed import KilledWorker

    first = (str(exc).strip().splitlines() or [""])[0]
    if isinstance(exc, CellGivenUp):
        return str(exc)
    if isinstance(exc, KilledWorker):
        return f"worker died {_times(max(starts, 1))} while measuring (KilledWorker: {first})"
    return f"failed {_times(max(starts, 1))}; last: {type(exc).__name__}: {first}"


class _Bar:
    """The sweep's progress (rich, on the terminal as yukti.benchmark's): cells done, failed, remaining,
    ETA; silent when off. (`yukti` routes descriptor 2 through a filter: a bar there would not show.)"""

    def __init__(self, enabled: bool, total: int, name: str) -> None:
        self.enabled, self.total, self.name = enabled, total, name
        self.failed = 0
        self._bar: Any = None

    def __enter__(self) -> "_Bar":
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("sweep {task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("· {task.fields[failed]} failed · {task.fields[remaining]} remaining · ETA"),
                                 TimeRemainingColumn(), TimeElapsedColumn(), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.name, total=self.total, failed=0, remaining=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def say(self, message: str) -> None:
        if self._bar is not None:
            self._bar.console.print(message, markup=False, highlight=False)

    def done(self, failed: bool) -> None:
        self.failed += failed
        if self._bar is not None:
            remaining = self.total - int(self._bar.tasks[0].completed) - 1
            self._bar.update(self._task, advance=1, failed=self.failed, remaining=remaining)


@contextlib.contextmanager
def _client(scheduler: str | None, workers: int | None, cores: int) -> Iterator[Any]:
    """A Client of the cluster that runs the cells: `scheduler`'s, or a LocalCluster made here."""
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        target = {"scheduler_file": scheduler} if Path(scheduler).is_file() else {"address": scheduler}
        try:
            client = Client(**target)
        except (OSError, TimeoutError, ValueError) as exc:
            raise YuktiError(f"cannot connect to the Dask scheduler {scheduler!r}: {type(exc).__name__}: {exc}") from None
        try:
            yield client
        finally:
            client.close()
        return
    # A dead worker's cell is rerun once by the scheduler before it is reported (KilledWorker).
    with dask.config.set({"distributed.scheduler.allowed-failures": MAX_STARTS - 1}):
        cluster = LocalCluster(n_workers=workers or max(1, environment.physical_cores() // cores), threads_per_worker=1,
                               processes=True, resources={"cores": cores}, dashboard_address=":0",
                               silence_logs=logging.ERROR)
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _check_workers(client: Any, cores: int, scheduler: str) -> None:
    """Some worker of an external cluster offers `cores`, or an error saying how to start one."""
    where = f"--scheduler-file {scheduler}" if Path(scheduler).is_file() else scheduler
    how = (f"start workers with a cores resource: dask worker {where} --nthreads 1 --resources cores={cores} "
           f"(one cell at a time per worker, on {cores} core(s))")
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except (TimeoutError, OSError):
        raise YuktiError(f"no Dask worker joined the scheduler {scheduler} within {WORKER_WAIT_S:.0f} s; {how}") from None
    offered = [w.get("resources", {}).get("cores", 0) for w in client.scheduler_info()["workers"].values()]
    if not any(c >= cores for c in offered):
        raise YuktiError(f"no worker of {scheduler} offers the resource cores >= {cores} (the grid's largest threads); "
                         f"workers offer {sorted(set(offered))}; {how}")


def sweep(spec: str | os.PathLike | Mapping[str, Any] | Spec, *, scheduler: str | None = None, workers: int | None = None,
          resume: bool = False, store: str | os.PathLike | None = None, progress: bool = False,
          report: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Run the sweep `spec` (a TOML file, its content as a mapping, or a Spec from `load_spec`) and
    return one row per cell (SUMMARY_COLUMNS): cell, model, backend, batch_size, threads, options
    (resolved, JSON), dataset, status (the stored row's: "ok", "error", "unavailable", "unsupported";
    "not run" after an interrupt), error, attempts (runs of the cell started here), ran (measured by
    this call; False for cells `resume` found stored), host, latency_p50_us, throughput_per_s and
    file (the cell's Parquet file). `frame.attrs` holds sweep, store and dashboard (the Dask dashboard link).

    Each cell's row goes to `store` (default: the results store) as soon as it is measured. The spec is
    checked completely before any cell runs (SpecError names the line). `resume`: skip cells stored
    with a status other than "error" (cells that ended in error run again). `scheduler`: the address
    ("tcp://HOST:PORT") or scheduler file of an existing Dask cluster; default: a LocalCluster of
    `workers` processes (default: physical cores // the grid's largest threads). `progress`: a
    progress bar. `report` is given one-line messages (the dashboard link at start, each cell
    given up); without it they are printed with the progress bar, or logged. Ctrl-C raises
    SweepInterrupted once the cluster is closed; everything finished is stored. See the module doc."""
    if workers is not None:
        workers = validation.positive_int("workers", workers)
        if scheduler is not None:
            raise InputError("workers sizes the local cluster; with scheduler= the cluster's own workers run the cells")
    plan = spec if isinstance(spec, Spec) else load_spec(spec)
    folder = Path(store if store is not None else results.default_store()).expanduser().absolute()
    outcomes: dict[str, dict[str, Any]] = {}
    if resume:
        for cell in plan.cells:
            stored = _stored(cell, folder, plan.name)
            if stored is not None:
                outcomes[cell.key] = stored
    todo = [cell for cell in plan.cells if cell.key not in outcomes]
    frame = _summary(plan, outcomes, folder)
    if not todo:
        return frame
    folder.mkdir(parents=True, exist_ok=True)
    cores = max(cell.threads for cell in todo)
    with _Bar(progress, len(todo), plan.name) as bar:
        def say(message: str) -> None:
            if report is not None:
                report(message)
            elif bar.enabled:
                bar.say(message)
            else:
                log.info("%s", message)

        with _client(scheduler, workers, cores) as client:
            # dashboard_link is made up from a template even when the scheduler serves no dashboard
            dashboard = client.dashboard_link if "dashboard" in client.scheduler_info().get("services", {}) else None
            say(f"Dask dashboard: {dashboard or 'none (the scheduler serves no dashboard; bokeh is needed for one)'}")
            if scheduler is not None:
                _check_workers(client, cores, scheduler)
            _Run(client, plan, folder, outcomes, bar, say).run(todo)
    _remove_leftovers(folder, [cell.file_name(plan.name) for cell in todo])
    return _summary(plan, outcomes, folder, dashboard=dashboard)


class _Run:
    """Submits the cells, reruns a failed one once, records the ones given up."""

    def __init__(self, client: Any, spec: Spec, folder: Path, outcomes: dict[str, dict[str, Any]], bar: _Bar,
                 say: Callable[[str], None]) -> None:
        self.client, self.spec, self.folder, self.outcomes, self.bar, self.say = client, spec, folder, outcomes, bar, say
        self.token = uuid.uuid4().hex[:8]  # this call's topics and task keys: nothing shared with another sweep
        self.submissions: dict[str, int] = {}
        self.cells: dict[str, Cell] = {}  # task key -> cell
        self.started = time.time()

    def topic(self, cell: Cell) -> str:
        return f"yukti-sweep-{self.token}-{cell.key}"

    def submit(self, cell: Cell) -> Any:
        n = self.submissions[cell.key] = self.submissions.get(cell.key, 0) + 1
        key = f"yukti-cell-{cell.key}-{self.token}-{n}"
        self.cells[key] = cell
        return self.client.submit(run_cell, cell, str(self.folder), self.spec.name, self.spec.policy, self.spec.eval_samples,
                                  self.topic(cell), key=key, pure=False, resources={"cores": cell.threads})

    def run(self, todo: list[Cell]) -> None:
        from distributed import as_completed

        pending = as_completed([self.submit(cell) for cell in todo])
        try:
            for future in pending:
                cell = self.cells.pop(future.key)
                outcome = None
                if future.status == "finished":
                    # lost with its worker before it came here: Dask recomputes it, and the rerun returns
                    # the outcome its cell logged (run_cell) instead of measuring again
                    with contextlib.suppress(Exception):
                        outcome = future.result()
                if isinstance(outcome, dict):
                    self.outcomes[cell.key] = {**outcome, "ran": True}
                    self.bar.done(outcome["status"] == "error")
                else:
                    retry = self.failed(cell, future)
                    if retry is not None:
                        pending.add(retry)
                future.release()
        except KeyboardInterrupt:
            with contextlib.suppress(Exception):
                self.client.cancel(list(pending.futures))
            # What the store holds now: cells may have stored themselves before their results came in.
            for cell in self.spec.cells:
                found = None if cell.key in self.outcomes else self.written(cell, errors=True)
                if found is not None:
                    self.outcomes[cell.key] = {**found, "ran": True}
            done = sum(1 for o in self.outcomes.values() if o.get("file") and o["status"] != "error")
            total = len(self.spec.cells)
            # a cell that ended in error remains: --resume runs it again
            message = (f"{done} of {total} cells are stored, {total - done} remain; run the sweep again with "
                       f"--resume (resume=True) to continue")
            raise SweepInterrupted(message, _summary(self.spec, self.outcomes, self.folder)) from None

    def written(self, cell: Cell, *, errors: bool = False) -> dict[str, Any] | None:
        """The cell's stored summary when its file was written by this call (not a row of an earlier sweep)."""
        found = _stored(cell, self.folder, self.spec.name, errors=errors)
        with contextlib.suppress(OSError):
            if found is not None and os.stat(found["file"]).st_mtime >= self.started:
                return found
        return None

    def failed(self, cell: Cell, future: Any) -> Any:
        """Resubmit a cell whose run failed, or record it as given up; returns the new future or None."""
        try:
            exc: BaseException | None = future.exception()
            tb = future.traceback()
        except Exception as err:  # noqa: BLE001 - e.g. cancelled by someone else on a shared scheduler
            exc, tb = err, None
        if exc is None:
            exc = RuntimeError(f"the result of task {future.key} could not be fetched")
        # A cell waiting on a worker that died never started: only started runs count.
        starts, done = cell_events(self.client, self.topic(cell))
        if done is not None:  # it finished; only its result was lost
            self.outcomes[cell.key] = {**done, "ran": True}
            self.bar.done(done["status"] == "error")
            return None
        if not isinstance(exc, CellGivenUp) and starts < MAX_STARTS and self.submissions[cell.key] < MAX_SUBMISSIONS:
            log.info("cell %s failed (%s: %s); running it again", cell.key, type(exc).__name__, exc)
            return self.submit(cell)
        reason = _describe_failure(exc, starts)
        if tb is not None and not isinstance(exc, CellGivenUp) and type(exc).__name__ != "KilledWorker":
            reason += "\n" + "".join(traceback.format_tb(tb)[-3:])
        path = self.folder / cell.file_name(self.spec.name)
        # The last run may have written its row and died before reporting it: that row stands.
        stored = self.written(cell)
        if stored is None:
            results.write_run(_error_frame(self.spec, cell, reason), path)
            stored = {"status": "error", "error": reason, "host": None, "latency_p50_us": None, "throughput_per_s": None,
                      "file": str(path)}
        self.outcomes[cell.key] = {**stored, "attempts": starts, "ran": True}
        self.say(f"cell {cell.key} ({cell.model_name} · {cell.backend} · batch {cell.batch_size}) given up: "
                 f"{reason.splitlines()[0]}")
        self.bar.done(stored["status"] == "error")
        return None


def _summary(spec: Spec, outcomes: dict[str, dict[str, Any]], folder: Path, *, dashboard: str | None = None) -> pd.DataFrame:
    rows = []
    for cell in spec.cells:
        outcome = outcomes.get(cell.key, {"status": "not run", "attempts": 0, "ran": False})
        rows.append({"cell": cell.key, "model": cell.model_name, "backend": cell.backend, "batch_size": cell.batch_size,
                     "threads": cell.threads, "options": json.dumps(cell.resolved, sort_keys=True, default=str),
                     "dataset": cell.dataset_label, **{k: outcome.get(k) for k in SUMMARY_COLUMNS[7:]}})
    frame = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    frame.attrs.update({"sweep": spec.name, "store": str(folder), "dashboard": dashboard})
    return frame


def _remove_leftovers(folder: Path, names: list[str]) -> None:
    """Delete temp files of this sweep's cell files left by writers killed mid-write: the store would
    otherwise recover such an older run over the newer file of the same name (yukti.results)."""
    wanted = set(names)
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            match = results._LEFTOVER.match(entry.name)
            if match and match["name"] in wanted:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
