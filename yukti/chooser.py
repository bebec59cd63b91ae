"""Choosing a backend: constraints in, ranked candidates out, and a session that runs the winner.

    choice = yukti.choose("jet_dnn", batch_size=1, max_p99_us=5, max_accuracy_drop=0.005)
    choice.winner            # the best candidate meeting every constraint, or None
    print(choice.explain())  # why, and what every other candidate misses and by how much
    session = yukti.Session("jet_dnn", max_p99_us=5)   # prepares the winner; session(x) runs it

The numbers come from the results store when a row was measured for the same model hash, host,
backend version, options, batch size, threads and dataset; whatever is missing is measured now with
`yukti.benchmark` (and stored, so the next choice reuses it). Metric names, labels, units and
directions come from yukti.vocabulary; derived ones (accuracy drop, AUC drop) are computed there.
The reference backend is the baseline, not a contender: it is a candidate only when named.

Longer than 400 lines on purpose: constraints, candidates, the Choice, the Pareto front, `choose`,
`from_results` (stored rows as they are) and `Session` share the candidate and check types and
one ranking; split, one decision would be spread over several modules. A candidate that cannot be measured
(unavailable, unsupported, failed, or `measure="never"` with nothing stored) stays in the answer with
its reason: it never silently disappears, and a constraint that cannot be checked counts as missed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Literal, Sequence, overload

import numpy as np
import pandas as pd

from yukti import registry, results, validation, vocabulary
from yukti.errors import InputError, UnknownNameError, YuktiError
from yukti.model import Model
from yukti.runner import Runner

REFERENCE_BACKEND = vocabulary.REFERENCE_BACKEND

# objective name -> (column, larger is better); the direction is the vocabulary's
OBJECTIVES: dict[str, tuple[str, bool]] = {
    name: (column, vocabulary.METRICS[column].higher_is_better)
    for name, column in [("p99", "latency_p99_us"), ("p50", "latency_p50_us"), ("throughput", "throughput_per_s"),
                         ("accuracy", "accuracy_drop"), ("prepare", "prepare_s"), ("rel_error", "max_rel_error")]
}

MeasureMode = Literal["auto", "never", "always"]


@dataclass(frozen=True)
class _ConstraintSpec:
    name: str  # keyword of choose()
    column: str  # metric it bounds
    upper: bool  # True: value <= limit; False: value >= limit

    @property
    def metric(self) -> vocabulary.Metric:
        return vocabulary.METRICS[self.column]

    @property
    def label(self) -> str:  # how it reads in sentences
        return self.metric.label.split(" (")[0]

    @property
    def unit(self) -> str:  # appended to numbers; fractions and AUC read as plain numbers
        unit = self.metric.unit
        return "" if unit in ("", "fraction", "AUC", "output units") else f" {unit}"


# A bound on a higher-is-better metric is a minimum (value >= limit), on the others a maximum.
CONSTRAINTS: dict[str, _ConstraintSpec] = {
    name: _ConstraintSpec(name, column, not vocabulary.METRICS[column].higher_is_better)
    for name, column in [
        ("max_p50_us", "latency_p50_us"), ("max_p99_us", "latency_p99_us"), ("min_throughput_per_s", "throughput_per_s"),
        ("max_accuracy_drop", "accuracy_drop"), ("max_auc_drop", "auc_drop"), ("max_prepare_s", "prepare_s"),
        ("max_abs_error", "max_abs_diff"), ("max_rel_error", "max_rel_error"), ("max_resolution", "resolution"),
    ]
}

# Metrics a candidate carries (table columns, in order).
METRICS = ("latency_p50_us", "latency_p99_us", "throughput_per_s", "argmax_agreement", "accuracy_drop", "auc",
           "reference_auc", "auc_drop", "max_abs_diff", "max_rel_error", "mean_rel_error", "resolution", "prepare_s",
           "latency_native_p50_us")


class NoBackendMeetsConstraints(YuktiError):
    """`Session(backend="auto")` found no candidate meeting every constraint; `.choice` says why."""

    def __init__(self, message: str, choice: "Choice") -> None:
        super().__init__(message)
        self.choice = choice


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value != 0 and (abs(value) >= 1e9 or abs(value) < 1e-3):
        text = f"{value:.3g}"
    elif abs(value) >= 1000:
        text = f"{value:,.0f}"
    else:
        text = f"{value:.4g}"
    return text + unit


def _isnan(value: Any) -> bool:
    try:
        return value is None or value is pd.NA or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _float(value: Any) -> float:
    return float("nan") if _isnan(value) else float(value)


@dataclass(frozen=True)
class ConstraintCheck:
    """One constraint applied to one candidate: met, missed (and by how much), or not measurable."""

    name: str
    limit: float
    value: float  # NaN when the candidate has no such number
    ok: bool
    label: str = ""
    unit: str = ""
    upper: bool = True

    @property
    def measured(self) -> bool:
        return not math.isnan(self.value)

    @property
    def excess(self) -> float:
        """How far past the limit (positive when missed, negative when met with room; NaN unknown)."""
        return self.value - self.limit if self.upper else self.limit - self.value

    def describe(self) -> str:
        sign = "≤" if self.upper else "≥"
        if not self.measured:
            return f"{self.label} not measured (needs {sign} {_num(self.limit, self.unit)})"
        text = f"{self.label} {_num(self.value, self.unit)} {sign if self.ok else ('>' if self.upper else '<')} {_num(self.limit, self.unit)}"
        if self.ok:
            return text
        how = "over by" if self.upper else "short by"
        ratio = ""
        if self.limit > 0 and self.value > 0:
            ratio = f", {_num(self.value / self.limit)}x the limit" if self.upper else f", {_num(self.value / self.limit)}x of it"
        return f"{text} ({how} {_num(abs(self.excess), self.unit)}{ratio})"


@dataclass(frozen=True)
class Candidate:
    """One backend (with its options) considered by `choose`, its numbers and its verdict."""

    backend: str
    options: dict[str, Any]
    status: str  # ok | not measured | unavailable | unsupported | error
    reason: str = ""
    source: str = ""  # "stored" (reused from the results store) | "measured" (now) | ""
    metrics: dict[str, float] = field(default_factory=dict)
    checks: tuple[ConstraintCheck, ...] = ()
    backend_version: str = ""
    run_id: str | None = None
    timestamp: pd.Timestamp | None = None
    n_samples: int | None = None
    rank: int = 0
    objective_value: float = float("nan")

    @property
    def measured(self) -> bool:
        return self.status == "ok"

    @property
    def meets(self) -> bool:
        """Measured and every constraint met (an unmeasurable constraint counts as missed)."""
        return self.measured and all(check.ok for check in self.checks)

    @property
    def misses(self) -> list[ConstraintCheck]:
        return [check for check in self.checks if not check.ok]

    def __getitem__(self, metric: str) -> float:
        return self.metrics.get(metric, float("nan"))

    def verdict(self) -> str:
        """One line: meets everything, or what it misses and by how much, or why it has no numbers."""
        if not self.measured:
            return f"{self.status}: {self.reason}" if self.reason else self.status
        if self.meets:
            return "meets every constraint" if self.checks else "no constraints given"
        return "misses " + "; ".join(check.describe() for check in self.misses)


def _candidate_table(candidates: Sequence[Candidate]) -> pd.DataFrame:
    rows = []
    for c in candidates:
        rows.append({
            "rank": c.rank, "backend": c.backend, "options": json.dumps(c.options, sort_keys=True, default=str),
            "status": c.status, "meets": c.meets, "source": c.source,
            **{metric: c.metrics.get(metric, float("nan")) for metric in METRICS},
            "misses": "; ".join(check.name for check in c.misses) if c.measured else "",
            "verdict": c.verdict(), "backend_version": c.backend_version, "run_id": c.run_id,
            "timestamp": c.timestamp, "n_samples": c.n_samples,
        })
    columns = ["rank", "backend", "options", "status", "meets", "source", *METRICS, "misses", "verdict",
               "backend_version", "run_id", "timestamp", "n_samples"]
    frame = pd.DataFrame(rows, columns=columns)
    frame["n_samples"] = frame["n_samples"].astype("Int64")
    return frame


class Choice(Sequence[Candidate]):
    """The ranked answer of `choose`: a sequence of Candidate, best first, with `.winner`."""

    def __init__(self, candidates: Sequence[Candidate], *, model: str, model_hash: str | None, batch_size: int,
                 threads: int, objective: str, constraints: dict[str, float], measure: str, dataset: str, host: str) -> None:
        self.candidates = tuple(candidates)
        self.model, self.model_hash, self.batch_size, self.threads = model, model_hash, batch_size, threads
        self.objective, self.constraints, self.measure, self.dataset, self.host = objective, dict(constraints), measure, dataset, host

    @overload
    def __getitem__(self, index: int) -> Candidate: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Candidate]: ...
    def __getitem__(self, index: int | slice) -> Candidate | Sequence[Candidate]:
        return self.candidates[index]

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self.candidates)

    @property
    def winner(self) -> Candidate | None:
        """The first-ranked candidate meeting every constraint; None when none does."""
        first = self.candidates[0] if self.candidates else None
        return first if first is not None and first.meets else None

    def get(self, backend: str) -> Candidate:
        for candidate in self.candidates:
            if candidate.backend == backend:
                return candidate
        raise UnknownNameError(f"no candidate {backend!r}; candidates are {[c.backend for c in self.candidates]}")

    def table(self) -> pd.DataFrame:
        """One row per candidate, ranked; `pareto(choice.table())` gives the front over them."""
        return _candidate_table(self.candidates)

    def pareto(self, objectives: Sequence[str] = ("latency_p99_us", "accuracy_drop", "prepare_s")) -> pd.DataFrame:
        return pareto(self.table(), objectives=objectives)

    def describe_constraints(self) -> str:
        if not self.constraints:
            return "no constraints"
        parts = []
        for name, limit in self.constraints.items():
            spec = CONSTRAINTS[name]
            parts.append(f"{spec.label} {'≤' if spec.upper else '≥'} {_num(limit, spec.unit)}")
        return ", ".join(parts)

    def explain(self) -> str:
        """Which candidate wins and why; what every other candidate misses and by how much."""
        column, higher = OBJECTIVES[self.objective]
        spec_unit = next((spec.unit for spec in CONSTRAINTS.values() if spec.column == column), "")
        best = "highest" if higher else "lowest"
        head = (f"{self.model} · batch {self.batch_size} · {self.threads} thread(s) · data {self.dataset} · "
                f"objective {self.objective} ({column}) · {self.describe_constraints()}")
        lines = [head]
        winner = self.winner
        if winner is not None:
            meeting = sum(c.meets for c in self.candidates)
            why = (f"meets every constraint and has the {best} {column} ({_num(winner.objective_value, spec_unit)}) "
                   f"of the {meeting} candidate(s) that do") if self.constraints else f"has the {best} {column} ({_num(winner.objective_value, spec_unit)})"
            lines.append(f"winner: {winner.backend} ({winner.source}) — {why}")
        else:
            measured = sum(c.measured for c in self.candidates)
            lines.append(f"no winner: none of the {len(self.candidates)} candidate(s) ({measured} measured) meets every constraint")
        for c in self.candidates:
            if c is winner:
                continue
            lines.append(f"  {c.backend}: {c.verdict()}")
        return "\n".join(lines)

    __str__ = explain

    def __repr__(self) -> str:
        win = self.winner.backend if self.winner else None
        return f"<Choice {self.model} batch={self.batch_size} objective={self.objective} winner={win!r} candidates={[c.backend for c in self]}>"


# -- pareto -------------------------------------------------------------------------------------

def pareto(df: pd.DataFrame, objectives: Sequence[str] = ("latency_p99_us", "accuracy_drop", "prepare_s"), *,
           maximize: Sequence[str] = (), by: str | Sequence[str] | None = None, ok_only: bool = True) -> pd.DataFrame:
    """The non-dominated rows of `df` over `objectives` (all minimized, except those in `maximize`).

    A row is dominated when another is at least as good in every objective and better in one.
    A derived metric the frame lacks (`accuracy_drop` = 1 - argmax_agreement, ...) is derived by
    yukti.vocabulary, under the name asked for (old names such as `accuracy_loss` too). Rows missing any
    objective cannot be compared and are left out; with `ok_only`, so are rows whose `status` is not
    "ok". `by` (e.g. "batch_size") computes one front per group. The original index is kept; rows are
    sorted by the objectives.
    """
    objectives = list(objectives)
    if not objectives:
        raise InputError("pareto needs at least one objective")
    unknown_max = set(maximize) - set(objectives)
    if unknown_max:
        raise UnknownNameError(f"maximize names {sorted(unknown_max)} that are not among the objectives {objectives}")
    frame = df.copy()
    lacking = [name for name in objectives if name not in frame.columns and vocabulary.column_of(name) in vocabulary.METRICS]
    if lacking:
        derived = vocabulary.derive(frame)
        for name in lacking:
            column = vocabulary.column_of(name)
            if column in derived.columns and derived[column].notna().any():
                frame[name] = derived[column]
    missing = [c for c in objectives if c not in frame.columns]
    if missing:
        raise UnknownNameError(f"pareto objectives {missing} are not columns of the frame (columns: {list(frame.columns)})")
    if ok_only and "status" in frame.columns:
        frame = frame[frame["status"] == "ok"]
    values = frame[objectives].apply(pd.to_numeric, errors="coerce").astype(float)
    complete = values.notna().all(axis=1)
    frame, values = frame[complete], values[complete]
    for column in maximize:
        values[column] = -values[column]
    keys = [by] if isinstance(by, str) else list(by or [])
    groups = frame.groupby(keys[0] if len(keys) == 1 else keys, sort=False, dropna=False).groups.values() if keys else [frame.index]
    keep: list[Any] = []
    for index in groups:
        v = values.loc[index].to_numpy()
        # i is dominated when some j is <= in every objective and < in at least one
        le = (v[None, :, :] <= v[:, None, :]).all(axis=2)  # le[i, j]: j at least as good as i everywhere
        lt = (v[None, :, :] < v[:, None, :]).any(axis=2)
        dominated = (le & lt).any(axis=1)
        keep.extend(np.asarray(index)[~dominated])
    return frame.loc[keep].sort_values([*keys, *objectives], kind="stable")


# -- choose -------------------------------------------------------------------------------------

def _dataset_of(model: Model, data: Any, signal: int | str | None, target: str | None = None) -> Any:
    """The Dataset the engine would evaluate on (None for random inputs), to match stored rows."""
    from yukti import datasets

    data = datasets.as_dataset(data, model, target=target) if data is not None else model.data
    if data is not None and signal is not None:
        data = data.with_signal(signal)
    return data


def _matches(series: pd.Series, value: Any) -> np.ndarray:
    # Explicit loop: schema columns may be object dtype holding pd.NA, whose == is not a bool.
    return np.array([not _isnan(v) and v == value for v in series], dtype=bool)


def _same_options(stored: Any, wanted_json: dict[str, Any]) -> bool:
    if not isinstance(stored, str):
        return False
    try:
        return json.loads(stored) == wanted_json
    except ValueError:
        return False


def _requested_options(cls: type[Runner], threads: int, extra: dict[str, Any]) -> dict[str, Any]:
    """The resolved options the engine records for this backend: the reuse key of stored rows."""
    return cls.resolve_options(extra, threads=threads)


def _latest(rows: pd.DataFrame) -> pd.Series | None:
    if rows.empty:
        return None
    order = pd.to_datetime(rows["timestamp"], utc=True, errors="coerce")
    return rows.loc[order.sort_values(kind="stable").index[-1]]


class _Finder:
    """Looks up reusable rows: status ok, same model hash / host / version / options / batch / threads / data."""

    def __init__(self, frame: pd.DataFrame, *, model_hash: str | None, batch_size: int, threads: int, dataset: str,
                 signal: str | None, need_signal: bool) -> None:
        if frame.empty or model_hash is None:
            self.rows = frame.iloc[0:0]
        else:
            mask = _matches(frame["status"], "ok") & _matches(frame["model_hash"], model_hash) & _matches(frame["dataset"], dataset)
            if need_signal and signal is not None:
                mask &= _matches(frame["signal_class"], signal)
            self.rows = frame[mask]
        self.batch_size, self.threads = batch_size, threads

    def row(self, backend: str, version: str, host: str, options: dict[str, Any]) -> pd.Series | None:
        rows = self.rows
        if rows.empty:
            return None
        wanted = json.loads(json.dumps(options, sort_keys=True, default=str))  # as the store writes it
        mask = (_matches(rows["backend"], backend) & _matches(rows["backend_version"], version) & _matches(rows["host"], host)
                & _matches(rows["batch_size"], self.batch_size) & _matches(rows["threads"], self.threads))
        rows = rows[mask]
        rows = rows[[_same_options(o, wanted) for o in rows["options"]]]
        return _latest(rows)


def _metrics_of(row: pd.Series) -> dict[str, float]:
    """The candidate's numbers from a row read through yukti.vocabulary.derive (drops included)."""
    return {metric: _float(row.get(metric)) for metric in METRICS}


def _has_values(row: pd.Series, constraints: dict[str, float]) -> bool:
    """Every constrained metric has a value in `row` (a row measured before a metric existed, or
    for another task, cannot answer that constraint: it is measured again, not silently missed)."""
    return all(not _isnan(row.get(CONSTRAINTS[name].column)) for name in constraints)


def _checks(metrics: dict[str, float], constraints: dict[str, float]) -> tuple[ConstraintCheck, ...]:
    checks = []
    for name, limit in constraints.items():
        spec = CONSTRAINTS[name]
        value = metrics.get(spec.column, float("nan"))
        ok = not math.isnan(value) and (value <= limit if spec.upper else value >= limit)
        checks.append(ConstraintCheck(name, float(limit), value, ok, spec.label, spec.unit, spec.upper))
    return tuple(checks)


def _rank_key(candidate: Candidate, objective: str) -> tuple:
    column, higher = OBJECTIVES[objective]
    value = candidate.metrics.get(column, float("nan"))
    sortable = (-value if higher else value) if not math.isnan(value) else math.inf
    p99 = candidate.metrics.get("latency_p99_us", float("nan"))
    group = 0 if candidate.meets else 1 if candidate.measured else 2
    return (group, len(candidate.misses) if candidate.measured else 0, sortable, p99 if not math.isnan(p99) else math.inf, candidate.backend)


def choose(
    model: Any,
    *,
    batch_size: int = 1,
    max_p50_us: float | None = None,
    max_p99_us: float | None = None,
    min_throughput_per_s: float | None = None,
    max_accuracy_drop: float | None = None,
    max_auc_drop: float | None = None,
    max_prepare_s: float | None = None,
    max_abs_error: float | None = None,
    max_rel_error: float | None = None,
    max_resolution: float | None = None,
    backends: Sequence[str] | None = None,
    objective: str = "p99",
    measure: MeasureMode = "auto",
    data: Any = None,
    threads: int = 1,
    options: dict[str, dict[str, Any]] | None = None,
    signal: int | str | None = None,
    policy: Any = None,
    max_eval_samples: int = 20_000,
    store: bool | str = True,
    stored: pd.DataFrame | None = None,
    task: str | None = None,
    target: str | None = None,
) -> Choice:
    """Rank `backends` (default: every registered one but the reference, the baseline) for `model`
    at `batch_size` under constraints.

    Accuracy drop is 1 - argmax agreement with the float reference; AUC drop is the reference's AUC
    minus the backend's on the same labelled samples (classification and anomaly tasks);
    `max_abs_error` bounds the largest |output - reference output|, `max_rel_error` the largest
    relative error of a sample and `max_resolution` the spread of the error (regression and anomaly
    tasks; yukti.metrics.regression_errors). `task` is passed to `yukti.benchmark` when measuring;
    `data` takes every form `yukti.benchmark` does, `target` the label column of a table or
    DataFrame. Numbers are reused from the results store
    (`store`: True = default store, a path, False = none; or a frame given as `stored`) when a status
    "ok" row exists for the same model hash, host, backend version, options, batch size, threads and
    dataset; `measure="auto"` measures the missing ones with `yukti.benchmark` (storing them),
    `"never"` marks them "not measured", `"always"` re-measures every candidate. `prepare_s` is as
    recorded: a warm artifact cache makes it small. Ranking: candidates meeting every constraint first,
    best `objective` ("p99", "p50", "throughput", "accuracy", "prepare") first; then those missing
    constraints (fewest misses first); then those without numbers.
    """
    import yukti
    from yukti import environment
    from yukti.engine import TimingPolicy, resolve_model

    if objective not in OBJECTIVES:
        raise UnknownNameError(f"unknown objective {objective!r}; objectives are {list(OBJECTIVES)}")
    if measure not in ("auto", "never", "always"):
        raise UnknownNameError(f"measure must be 'auto', 'never' or 'always'; got {measure!r}")
    batch_size = validation.positive_int("batch_size", batch_size)
    threads = validation.positive_int("threads", threads)
    max_eval_samples = validation.positive_int("max_eval_samples", max_eval_samples)
    given = {"max_p50_us": max_p50_us, "max_p99_us": max_p99_us, "min_throughput_per_s": min_throughput_per_s,
             "max_accuracy_drop": max_accuracy_drop, "max_auc_drop": max_auc_drop, "max_prepare_s": max_prepare_s,
             "max_abs_error": max_abs_error, "max_rel_error": max_rel_error, "max_resolution": max_resolution}
    constraints = _limits(given)
    if policy is not None and not isinstance(policy, TimingPolicy):
        raise InputError(f"policy must be a yukti.TimingPolicy; got {type(policy).__name__}")

    model = resolve_model(model)
    names = list(dict.fromkeys(backends)) if backends else [n for n in registry.names() if n != REFERENCE_BACKEND]
    infos = {name: registry.backend_info(name) for name in names}  # unknown names fail here, before measuring
    options = options or {}
    dataset = _dataset_of(model, data, signal, target)
    dataset_label = dataset.label if dataset is not None else "random inputs"
    signal_name = dataset.signal_name if dataset is not None and dataset.class_names else None
    need_auc = "max_auc_drop" in constraints
    if need_auc and (dataset is None or dataset.y is None):
        raise InputError(f"max_auc_drop needs labelled data; {model.name!r} is evaluated on {dataset_label} — pass data=...")
    host = str(environment._static()["host"])
    model_hash = model.hash if model.has_onnx else None

    if stored is None:
        stored = results.load(None if store is True else store) if store is not False else results.conform(pd.DataFrame())
    stored = results.with_derived(stored)  # a frame handed in may predate the derived metrics

    # Candidates that can be measured here, with the options they would run with.
    plans: dict[str, tuple[dict[str, Any], str]] = {}  # backend -> (options, version)
    fixed: dict[str, Candidate] = {}  # backends that cannot be measured: final now
    for name, info in infos.items():
        if not info.available:
            fixed[name] = Candidate(name, dict(options.get(name, {})), "unavailable", info.reason)
            continue
        cls = registry.runner_class(name)
        opts = _requested_options(cls, threads, options.get(name, {}))
        support = cls.supports(model)
        if not support:
            fixed[name] = Candidate(name, opts, "unsupported", support.describe(), backend_version=info.version)
            continue
        plans[name] = (opts, info.version)

    def found(frame: pd.DataFrame) -> dict[str, pd.Series]:
        finder = _Finder(frame, model_hash=model_hash, batch_size=batch_size, threads=threads, dataset=dataset_label,
                         signal=signal_name, need_signal=need_auc)
        rows = {}
        for name, (opts, version) in plans.items():
            row = finder.row(name, version, host, opts)
            if row is not None and _has_values(row, constraints):
                rows[name] = row
        return rows

    reuse = found(stored) if measure != "always" else {}
    to_measure = [name for name in plans if name not in reuse] if measure != "never" else []
    measured: pd.DataFrame | None = None
    if to_measure:
        # every row carries the reference's AUC on its samples (reference_auc): no baseline row needed
        bench_options = {name: options[name] for name in to_measure if name in options}
        measured = yukti.benchmark(model, backends=to_measure, batch_sizes=[batch_size], data=data, threads=threads,
                                   options=bench_options, signal=signal, policy=policy, max_eval_samples=max_eval_samples,
                                   store=store, task=task, target=target)
        measured = results.with_derived(measured)

    candidates: list[Candidate] = []
    for name in names:
        if name in fixed:
            candidates.append(fixed[name])
            continue
        opts, version = plans[name]
        if name in reuse:
            row, source = reuse[name], "stored"
        elif measured is not None and name in to_measure:
            rows = measured[_matches(measured["backend"], name)]
            row = rows.iloc[0] if len(rows) else None
            if row is None or row["status"] != "ok":
                status = "error" if row is None else str(row["status"])
                why = "no row came back from the benchmark" if row is None else str(row["error"]).strip().splitlines()[0]
                candidates.append(Candidate(name, opts, status, why, "measured", backend_version=version))
                continue
            source = "measured"
        else:
            why = "no stored result for this model hash, host, backend version, options, batch size, threads and data"
            candidates.append(Candidate(name, opts, "not measured", why + " (measure='never')", backend_version=version))
            continue
        candidates.append(_row_candidate(name, opts, row, source, version, constraints, objective))
    return Choice(_ranked(candidates, objective), model=model.name, model_hash=model_hash, batch_size=batch_size,
                  threads=threads, objective=objective, constraints=constraints, measure=measure, dataset=dataset_label, host=host)


def _row_candidate(name: str, options: dict[str, Any], row: pd.Series, source: str, version: str,
                   constraints: dict[str, float], objective: str) -> Candidate:
    metrics = _metrics_of(row)
    column, _ = OBJECTIVES[objective]
    n = row.get("n_samples")
    return Candidate(name, options, "ok", "", source, metrics, _checks(metrics, constraints), str(row.get("backend_version") or version),
                     row.get("run_id"), row.get("timestamp"), None if _isnan(n) else int(n),
                     objective_value=metrics.get(column, float("nan")))


def _ranked(candidates: list[Candidate], objective: str) -> list[Candidate]:
    ranked = sorted(candidates, key=lambda c: _rank_key(c, objective))
    return [_with(c, rank=i + 1) for i, c in enumerate(ranked)]


def _limits(given: dict[str, float | None]) -> dict[str, float]:
    unknown = set(given) - set(CONSTRAINTS)
    if unknown:
        raise UnknownNameError(f"unknown constraint(s) {sorted(unknown)}; constraints are {list(CONSTRAINTS)}")
    # Every limit is a latency, rate, fraction or duration: negative is meaningless, inf means "no limit".
    return {name: validation.non_negative_limit(name, value) for name, value in given.items() if value is not None}


def from_results(frame: pd.DataFrame, model: str, *, batch_size: int = 1, backends: Sequence[str] | None = None,
                 objective: str = "p99", **limits: float | None) -> Choice:
    """Rank stored rows as they are, measuring nothing and matching no host or model hash: the
    latest "ok" row of each backend configuration of `model` (by name) at `batch_size`. For results
    measured elsewhere (another machine, an older model file), where `choose` reuses nothing;
    `limits` are choose's constraint keywords."""
    if objective not in OBJECTIVES:
        raise UnknownNameError(f"unknown objective {objective!r}; objectives are {list(OBJECTIVES)}")
    constraints = _limits(limits)
    rows = results.with_derived(frame) if not frame.empty else frame
    rows = rows[_matches(rows["status"], "ok") & _matches(rows["model"], model) & _matches(rows["batch_size"], batch_size)]
    if backends is not None:
        rows = rows[rows["backend"].isin(list(backends))]
    rows = rows.assign(_when=pd.to_datetime(rows["timestamp"], utc=True, errors="coerce")).sort_values("_when", kind="stable")
    rows = rows.drop_duplicates(["backend", "options"], keep="last")
    candidates = [_row_candidate(str(row["backend"]), json.loads(row["options"]) if isinstance(row["options"], str) else {},
                                 row, "stored", str(row.get("backend_version") or ""), constraints, objective)
                  for _, row in rows.iterrows()]

    def one(column: str) -> Any:
        values = rows[column].dropna().astype(str).unique() if column in rows.columns else []
        return values[0] if len(values) == 1 else ", ".join(sorted(values)) or "—"

    threads = one("threads")
    return Choice(_ranked(candidates, objective), model=model, model_hash=one("model_hash"), batch_size=batch_size,
                  threads=int(threads) if str(threads).isdigit() else threads, objective=objective, constraints=constraints,
                  measure="never", dataset=one("dataset"), host=one("host"))


def _with(candidate: Candidate, **changes: Any) -> Candidate:
    from dataclasses import replace

    return replace(candidate, **changes)


# -- Session ------------------------------------------------------------------------------------

class Session:
    """The chosen backend, prepared and callable like a runner.

    `Session(model, backend="auto", max_p99_us=5, ...)` runs `choose` with the constraints (and any
    other `choose` keyword) and prepares the winner; `session.choice` explains the decision. No winner
    raises NoBackendMeetsConstraints listing what each candidate missed. A named backend is prepared
    directly; given constraints too, it is checked against them first.
    """

    def __init__(self, model: Any, backend: str = "auto", **constraints: Any) -> None:
        from yukti.engine import resolve_model

        allowed = set(CONSTRAINTS) | {"batch_size", "backends", "objective", "measure", "data", "threads", "options",
                                      "signal", "policy", "max_eval_samples", "store", "stored", "task", "target"}
        unknown = set(constraints) - allowed
        if unknown:
            raise UnknownNameError(f"Session got unknown keyword(s) {sorted(unknown)}; allowed are {sorted(allowed)}")
        self.model = resolve_model(model)
        self.choice: Choice | None = None
        limits = {k: v for k, v in constraints.items() if k in CONSTRAINTS and v is not None}
        if backend == "auto" or limits:
            if backend != "auto":
                constraints["backends"] = [backend]
            self.choice = choose(self.model, **constraints)
            winner = self.choice.winner
            if winner is None:
                raise NoBackendMeetsConstraints(
                    f"no backend meets the constraints for {self.model.name}:\n{self.choice.explain()}", self.choice)
            backend, opts = winner.backend, dict(winner.options)
        else:
            cls = registry.runner_class(backend)
            threads = validation.positive_int("threads", constraints.get("threads", 1))
            opts = _requested_options(cls, threads, (constraints.get("options") or {}).get(backend, {}))
        self.backend = backend
        self.runner: Runner = registry.runner(backend, self.model, **opts)

    @property
    def info(self) -> dict[str, Any]:
        return self.runner.info

    def __call__(self, inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        return self.runner(inputs)

    def explain(self) -> str:
        return self.choice.explain() if self.choice is not None else f"backend {self.backend!r} was named, not chosen"

    def __repr__(self) -> str:
        return f"<Session {self.model.name} on {self.backend!r}>"
