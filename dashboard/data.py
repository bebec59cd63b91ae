"""Data for the dashboard: loading the results store and asv history, the Pareto front, choosing
from stored results (through yukti.chooser), step flags, the stored fidelity curves, the stored
precision scans (yukti.scan), the stored kernel sweeps (benchmarks/kernel_sweep.py), the quick
benchmark, and reading a model and data uploaded to the Measure page and measuring them.
Metric names, labels and directions, and the derived metrics, come from yukti.vocabulary.

No Streamlit here: the pages wrap these functions in `st.cache_data` / `st.cache_resource`, and the
tests call them directly.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import replace
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

import yukti
from yukti import chooser, curves, datasets, engine, results, safe_names, vocabulary
from yukti import precision as scan
from yukti.datasets import Dataset
from yukti.errors import InputError, ModelLoadError, YuktiError
from yukti.fixed_point import FixedType, PrecisionError
from yukti.vocabulary import METRICS

REPO_ROOT = Path(__file__).resolve().parent.parent

# Distinguish one configuration of a backend from another (threads, precision, ...).
CONFIG_KEYS = ["model", "backend", "options", "batch_size"]

metric_label = vocabulary.label  # axis title of a metric: label and unit


# -- the results store ----------------------------------------------------------------------------

def store_path(store: str | os.PathLike | None = None) -> Path:
    return Path(store) if store else results.default_store()


def store_fingerprint(store: str | os.PathLike | None = None) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the store's files: a new run changes it, so a cached
    load keyed by it is recomputed exactly when the store changed."""
    folder = store_path(store)
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.parquet")))


def load_results(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored row with the derived metrics added. Unreadable files are skipped (a StoreWarning
    names each) and listed in `frame.attrs["skipped_files"]` as (path, reason) pairs for a page to show."""
    contents = results.read_store(store_path(store))
    frame = with_derived(contents.frame)
    frame.attrs["skipped_files"] = [(str(item.path), item.reason) for item in contents.skipped]
    return frame


def with_derived(frame: pd.DataFrame, group: Sequence[str] = vocabulary.RUN_KEYS) -> pd.DataFrame:
    """The derived metrics of yukti.vocabulary (accuracy drop, AUC drop against the reference of
    the same `group`: the reference of another run may have seen other data)."""
    return vocabulary.derive(frame, run_keys=group)


def ok_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["status"] == "ok"]


def latest(frame: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """The most recent successful measurement of each configuration (several runs accumulate in the
    store; the pages compare backends, not runs)."""
    rows = ok_rows(frame)
    if "timestamp" in rows.columns:
        rows = rows.sort_values("timestamp", kind="stable")
    return with_labels(rows.drop_duplicates(list(keys), keep="last").reset_index(drop=True))


def options_text(options: object) -> str:
    """Short `key=value` text of a backend's options, for labels and hover."""
    if not isinstance(options, str) or not options:
        return ""
    try:
        parsed = json.loads(options)
    except ValueError:
        return options
    if not isinstance(parsed, dict):
        return str(parsed)
    return ", ".join(f"{k}={v}" for k, v in sorted(parsed.items()))


def with_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """A `label` column: the backend name, plus its options where one backend appears with several
    option sets (say hls4ml at two precisions), so every line on a chart is one configuration."""
    frame = frame.copy()
    if frame.empty:
        frame["label"] = pd.Series(dtype=object)
        return frame
    n_options = frame.groupby("backend")["options"].transform("nunique")
    frame["label"] = [
        f"{b} [{_options_diff(o, frame.loc[frame['backend'] == b, 'options'])}]" if n > 1 else str(b)
        for b, o, n in zip(frame["backend"], frame["options"], n_options)
    ]
    return frame


def _options_diff(options: object, all_options: pd.Series) -> str:
    """Only the option values that differ between this backend's configurations."""
    parsed = [json.loads(o) if isinstance(o, str) and o else {} for o in all_options.unique()]
    mine = json.loads(options) if isinstance(options, str) and options else {}
    varying = sorted({k for p in parsed for k in p if any(q.get(k) != p.get(k) for q in parsed)})
    return ", ".join(f"{k}={mine.get(k)}" for k in varying) or options_text(options)


def models(frame: pd.DataFrame) -> list[str]:
    return sorted(ok_rows(frame)["model"].dropna().unique().tolist())


def batch_sizes(frame: pd.DataFrame) -> list[int]:
    return sorted(int(b) for b in ok_rows(frame)["batch_size"].dropna().unique())


def available_metrics(frame: pd.DataFrame, candidates: Iterable[str] | None = None) -> list[str]:
    """Metric columns that have at least one value in `frame`."""
    columns = list(candidates) if candidates is not None else list(METRICS)
    return [c for c in columns if c in frame.columns and pd.to_numeric(frame[c], errors="coerce").notna().any()]


# -- hosts: one store measured on several machines (a sweep) ------------------------------------------
# A host is what its rows say of it (yukti.environment): host name, CPU model and core count, so two
# machines that share a host name (containers often do) stay apart. Rows without them (stored by
# another tool) form one "unknown host".
HOST_COLUMNS = ["host", "cpu", "cpu_cores"]


def host_label(host: object, cpu: object, cores: object) -> str:
    """"hostname · CPU model · N cores", the name of one machine on the dashboard."""
    name = str(host) if _given(host) else "unknown host"
    model = str(cpu) if _given(cpu) else "unknown CPU"
    count = pd.to_numeric(pd.Series([cores]), errors="coerce").iloc[0]
    return f"{name} · {model} · {f'{int(count)} cores' if pd.notna(count) else '? cores'}"


def _given(value: object) -> bool:
    return not (value is None or (not isinstance(value, str) and pd.isna(value))) and str(value).strip() != ""


def host_labels(frame: pd.DataFrame) -> pd.Series:
    """`host_label` of every row (aligned with `frame`)."""
    columns = [frame[c] if c in frame.columns else pd.Series(None, index=frame.index, dtype=object) for c in HOST_COLUMNS]
    keys = list(zip(*(c.astype(object).tolist() for c in columns)))
    names = {key: host_label(*key) for key in set(keys)}  # a store holds many rows, few hosts
    return pd.Series([names[key] for key in keys], index=frame.index, dtype=object)


def hosts(frame: pd.DataFrame) -> list[str]:
    """The hosts that measured something successfully, by `host_label`."""
    return sorted(host_labels(ok_rows(frame)).unique().tolist())


def on_hosts(frame: pd.DataFrame, chosen: Iterable[str]) -> pd.DataFrame:
    """The rows measured on the `chosen` hosts (`host_label`s)."""
    return frame[host_labels(frame).isin(list(chosen))]


def short_host_names(labels: Iterable[str]) -> dict[str, str]:
    """host label -> the host name alone where that tells the hosts apart, else the whole label."""
    labels = sorted(set(labels))
    names = {label: label.split(" · ", 1)[0] for label in labels}
    return names if len(set(names.values())) == len(labels) else {label: label for label in labels}


def latest_per_host(frame: pd.DataFrame, keys: Sequence[str] = CONFIG_KEYS) -> pd.DataFrame:
    """`latest`, kept apart per host (column `host_label`): one host's run never stands for
    another's. Where rows of several hosts remain, each `label` names its host too, so a line or a
    point on a chart is one configuration on one machine."""
    rows = latest(frame.assign(host_label=host_labels(frame)), [*keys, "host_label"])
    if rows["host_label"].nunique() > 1:
        short = short_host_names(rows["host_label"])
        rows["label"] = rows["label"] + " · " + rows["host_label"].map(short)
    return rows


def host_comparison(frame: pd.DataFrame, model: str, batch_size: int) -> pd.DataFrame:
    """`model` at `batch_size` on every host, side by side: the latest successful run of each
    backend configuration (`label`) per host (`host_label`), with `vs_fastest_host`, its p50
    latency over the lowest p50 of that configuration on any host (1: this host is the fastest)."""
    rows = frame[(frame["model"] == model) & (pd.to_numeric(frame["batch_size"], errors="coerce") == batch_size)]
    rows = latest(rows.assign(host_label=host_labels(rows)), [*CONFIG_KEYS, "host_label"])
    if rows.empty:
        return rows.assign(vs_fastest_host=pd.Series(dtype=float))
    p50 = pd.to_numeric(rows["latency_p50_us"], errors="coerce")
    rows["vs_fastest_host"] = p50 / p50.groupby(rows["label"]).transform("min")
    return rows.sort_values(["label", "host_label"], kind="stable").reset_index(drop=True)


# -- Pareto front -----------------------------------------------------------------------------------

def pareto(frame: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The non-dominated rows (all objectives minimized), by the library's own definition
    (`yukti.pareto`), so the dashboard and `yukti.choose` never disagree on the front."""
    return yukti.pareto(frame, objectives=tuple(objectives))


# -- choosing a backend from stored results ----------------------------------------------------------

def choose(frame: pd.DataFrame, model: str, *, batch_size: int, backends: Sequence[str] | None = None,
           **limits: float | None) -> tuple[yukti.Choice, str]:
    """yukti.chooser on stored results, measuring nothing: (the choice, a note for the page).

    `yukti.choose(..., measure="never", stored=frame)` first: it reuses only rows measured on this
    host for the same model hash, backend version, options and data, so its answer holds here. When
    it has no such row (results copied from another machine, an older model, a model not loadable
    here), `yukti.chooser.from_results` ranks the stored rows as they are, and the note says so.
    `limits` are choose's constraint keywords (max_p99_us, max_accuracy_drop, ...)."""
    try:
        chosen = yukti.choose(model, batch_size=batch_size, backends=list(backends) if backends else None,
                              measure="never", stored=frame, **limits)
        if any(c.measured for c in chosen):
            return chosen, ""
        note = ("yukti.choose found no stored row measured on this host for this model's current hash, backend "
                "versions and options; ranking the stored rows as they are.")
    except Exception as exc:  # the page must still answer from the stored numbers
        note = f"yukti.choose could not answer ({type(exc).__name__}: {exc}); ranking the stored rows as they are."
    return chooser.from_results(frame, model, batch_size=batch_size, backends=backends, **limits), note


def snippet(model: str, backend: str, options: object = None, *, batch_size: int = 1) -> str:
    """Python that loads `model` and runs it on `backend` with the measured options."""
    from yukti import zoo

    load = f"yukti.zoo.get({model!r})" if model in zoo.names() else f"yukti.load({model + '.onnx'!r})  # your model file"
    opts = json.loads(options) if isinstance(options, str) and options else {}
    if len(opts) <= 2:
        call = f"run = yukti.runner({backend!r}, model{''.join(f', {k}={v!r}' for k, v in sorted(opts.items()))})  # prepared once, cached"
    else:  # the measured options, one per line, so the snippet stays readable
        call = "\n".join(["run = yukti.runner(  # prepared once, cached", f"    {backend!r}, model,",
                          *[f"    {k}={v!r}," for k, v in sorted(opts.items())], ")"])
    return "\n".join([
        "import yukti",
        "",
        f"model = {load}",
        call,
        f"x = model.example_inputs({batch_size})[0]  # or your own batch of inputs",
        "y = run(x)",
        "print(y.shape)",
    ])


# -- asv history ------------------------------------------------------------------------------------

def default_asv_results_dir(repo: Path | None = None) -> Path:
    """asv.conf.json's results_dir (relative to the config), `.asv/results` when it names none. The
    config is looked for in `repo`, else the working directory, else this source checkout (an
    installed dashboard lives in site-packages, where no asv.conf.json is)."""
    if repo is None:
        repo = next((d for d in (Path.cwd(), REPO_ROOT) if (d / "asv.conf.json").is_file()), Path.cwd())
    conf = repo / "asv.conf.json"
    results_dir = ".asv/results"
    if conf.is_file():
        try:
            # asv's config is JSON with // comments allowed
            text = "\n".join(line for line in conf.read_text().splitlines() if not line.strip().startswith("//"))
            results_dir = json.loads(text).get("results_dir", results_dir)
        except ValueError:
            pass
    return (repo / results_dir).resolve()


def asv_fingerprint(results_dir: str | os.PathLike) -> tuple[tuple[str, int], ...]:
    folder = Path(results_dir)
    if not folder.is_dir():
        return ()
    return tuple(sorted((str(p.relative_to(folder)), p.stat().st_mtime_ns) for p in folder.rglob("*.json")))


def load_history(results_dir: str | os.PathLike, machine: str | None = None) -> pd.DataFrame:
    """asv results in the results schema (one row per commit × model × backend × batch), ordered
    by commit date, with derived metrics. Raises NotImplementedError when this yukti has no asv loader."""
    loader = getattr(results, "from_asv", None)
    if loader is None:
        raise NotImplementedError("this yukti has no yukti.results.from_asv (asv loader) yet")
    frame = loader(results_dir, machine=machine)
    if frame.empty:
        return frame
    if "status" not in frame.columns or frame["status"].isna().all():
        frame = frame.assign(status="ok")
    frame = with_derived(frame, group=("commit_hash", "model", "batch_size"))
    frame["commit_date"] = pd.to_datetime(frame["commit_date"], utc=True, errors="coerce")
    return frame.sort_values(["commit_date", "commit_hash"], kind="stable").reset_index(drop=True)


NOT_METRICS = {"batch_size", "threads", "n_calls", "cpu_cores", "n_samples"}


def history_metrics(history: pd.DataFrame) -> list[str]:
    """Known metrics first, then any other numeric column asv filled (time_*_us, peakmem_*_mb, ...):
    every benchmark of the suite can be followed over commits, lower taken as better as in asv."""
    known = available_metrics(history)
    others = sorted(c for c in history.columns
                    if c not in METRICS and c not in NOT_METRICS and c not in known
                    and pd.api.types.is_numeric_dtype(history[c]) and not pd.api.types.is_bool_dtype(history[c])
                    and history[c].notna().any())
    return known + others


def history_series(history: pd.DataFrame, model: str, batch_size: int, metric: str) -> pd.DataFrame:
    """One row per backend configuration × commit, in commit order, with `commit` (short hash)."""
    rows = history[(history["model"] == model) & (history["batch_size"] == batch_size)]
    rows = rows[pd.to_numeric(rows[metric], errors="coerce").notna()]
    rows = with_labels(rows.drop_duplicates(["commit_hash", "backend", "options"], keep="last"))
    rows = rows.assign(commit=rows["commit_hash"].astype(str).str[:8])
    return rows.sort_values(["commit_date", "commit_hash"], kind="stable").reset_index(drop=True)


def flag_steps(series: pd.DataFrame, metric: str, threshold: float) -> pd.DataFrame:
    """Commit-to-commit changes of `metric` that are worse by more than `threshold` (relative), per
    line. Direction comes from the vocabulary: a throughput drop is a regression, as is a latency rise."""
    higher_better = vocabulary.higher_is_better(metric)
    flags = []
    for label, line in series.groupby("label", sort=False):
        values = pd.to_numeric(line[metric], errors="coerce").to_numpy(dtype=float)
        for i in range(1, len(values)):
            before, after = values[i - 1], values[i]
            worse = (before - after) if higher_better else (after - before)
            scale = abs(before) if before != 0 else 1.0  # a loss going from exactly 0 is judged absolutely
            if worse > threshold * scale:
                flags.append({
                    "label": label, "commit": line["commit"].iloc[i], "previous_commit": line["commit"].iloc[i - 1],
                    "commit_date": line["commit_date"].iloc[i], metric: after, "before": before,
                    "change": (after - before) / scale,
                })
    columns = ["label", "commit", "previous_commit", "commit_date", metric, "before", "change"]
    return pd.DataFrame(flags, columns=columns)


# -- fidelity (drawn from the store: yukti.curves) ----------------------------------------------------

# |Δ| against the reference means something in every task; the task's own metrics follow (vocabulary).
FIDELITY_COMMON = ("max_abs_diff", "mean_abs_diff")


def fidelity_metrics(task: str | None) -> list[str]:
    """The metric columns the Fidelity page shows for `task`: |Δ| against the reference, then every
    metric yukti.vocabulary gives the task (classification: argmax agreement, AUC, efficiencies at
    fixed background; regression: relative errors, resolution; anomaly: the score's AUC and
    efficiency at a fixed false-positive rate, and the reconstruction's errors)."""
    task = task if isinstance(task, str) and task else vocabulary.CLASSIFICATION  # runs stored before tasks: classifiers
    return [*FIDELITY_COMMON, *(c for c, m in METRICS.items() if m.task and task in m.task)]


def fidelity_runs(frame: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per stored run of `model` that has successful rows, newest first: run_id, timestamp,
    dataset, task, signal_class, n_samples, backends."""
    rows = ok_rows(frame)
    rows = rows[rows["model"] == model]
    columns = ["run_id", "timestamp", "dataset", "task", "signal_class", "n_samples"]
    rows = rows.assign(**{c: pd.NA for c in columns if c not in rows.columns})  # e.g. runs stored before tasks
    if rows.empty:
        return pd.DataFrame(columns=[*columns, "backends"])
    runs = (rows.groupby("run_id", sort=False, dropna=True)
            .agg(**{c: (c, "first") for c in columns[1:]},
                 backends=("backend", lambda b: ", ".join(sorted(b.astype(str).unique()))))
            .reset_index())
    return runs.sort_values("timestamp", ascending=False, kind="stable").reset_index(drop=True)


def run_fidelity(frame: pd.DataFrame, run_id: str, model: str) -> pd.DataFrame:
    """The run's successful rows of `model`, one per backend configuration (its fidelity numbers do
    not depend on the batch size), with a `label` each."""
    rows = ok_rows(frame)
    rows = rows[(rows["run_id"].astype(str) == str(run_id)) & (rows["model"] == model)]
    return with_labels(rows.drop_duplicates(["backend", "options"]).reset_index(drop=True))


def load_curves(runs: str | pd.DataFrame, store: str | os.PathLike | None = None) -> pd.DataFrame:
    """The stored fidelity curves (yukti.curves) of a run id, or of the runs and backend
    configurations in result rows (then with the rows' `label`, when they have one). Empty when
    none were stored (a run from before curves were stored) or the curves file is unreadable."""
    if isinstance(runs, str):
        return curves.load(store_path(store), [runs])
    keys = ["run_id", "backend", "options"]
    wanted = runs[[*keys, *(["label"] if "label" in runs.columns else [])]].drop_duplicates(keys).astype({k: str for k in keys})
    found = curves.load(store_path(store), wanted["run_id"].unique())
    return found.astype({k: str for k in keys}).merge(wanted, on=keys, how="inner")


def efficiency_lines(stored: pd.DataFrame) -> pd.DataFrame:
    """The efficiency curves of `load_curves` output: bkg_eff, sig_eff per label."""
    rows = stored[stored["curve"] == curves.EFFICIENCY]
    return rows.rename(columns={"x": "bkg_eff", "y": "sig_eff"}).reset_index(drop=True)


def difference_histogram(stored: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """From `load_curves` output: histograms of log10 |output − reference| (log10_abs_diff, count
    per label), cropped to the range where some backend has differences, and per label how many
    outputs equal the reference's exactly (n_values, n_equal, exact_zero_fraction)."""
    rows = stored[stored["curve"] == curves.ABS_DIFF].rename(columns={"x": "log10_abs_diff", "y": "count"})
    label = "label" if "label" in rows.columns else "backend"
    equal = (rows.groupby(label, sort=True).agg(n_values=("n_values", "first"), n_equal=("n_equal", "first")).reset_index())
    equal["exact_zero_fraction"] = equal["n_equal"].astype(float) / equal["n_values"].astype(float)
    filled = rows.loc[rows["count"] > 0, "log10_abs_diff"]
    if len(filled):
        rows = rows[rows["log10_abs_diff"].between(filled.min() - 0.5, filled.max() + 0.5)]
    return rows.reset_index(drop=True), equal


# -- precision scans (yukti.scan) ----------------------------------------------------------------------

# What a scan measured per configuration, in the order the Precision page offers them.
SCAN_METRICS = ("auc", "auc_drop", "eff_at_bkg_1pct", "eff_at_bkg_10pct", "argmax_agreement", "max_abs_diff",
                "mean_abs_diff")
SCAN_NUMBERS = ("width", "integer_bits", "overflows", "prepare_s", "reference_auc", "n_samples", *SCAN_METRICS)
PER_LAYER = "per-layer"


def scan_fingerprint(store: str | os.PathLike | None = None) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the scan files (`scans/` in the store): the cache key
    of `load_scans`, so a new scan is picked up on the next rerun."""
    folder = scan.scan_store(store_path(store))
    if not folder.is_dir():
        return ()
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.glob("*.parquet")))


def load_scans(store: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every stored scan row (yukti.precision.load_scans), with the columns a scan may lack filled: a
    scan without a bound has no `meets` / `smallest`, one with no failed configuration no `error`.
    A per-layer scan's integer bits are all None, which Parquet stores untyped: made numeric here."""
    frame = scan.load_scans(store_path(store))
    for column in [*scan.SCAN_COLUMNS, "status", "error"]:
        if column not in frame.columns:
            frame[column] = pd.NA
    for column in SCAN_NUMBERS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame["status"] = frame["status"].fillna("ok")  # scans stored before failures were recorded
    for column in ("meets", "smallest"):
        frame[column] = frame[column].astype("boolean")
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    return frame


def scan_models(scans: pd.DataFrame) -> list[str]:
    return sorted(scans["model"].dropna().astype(str).unique().tolist())


def scan_list(scans: pd.DataFrame, model: str) -> pd.DataFrame:
    """One row per stored scan of `model`, newest first: scan_id, timestamp, mode, backend, dataset,
    n_samples, configs (how many configurations), failed (how many of them failed), smallest."""
    rows = scans[scans["model"] == model]
    columns = ["scan_id", "timestamp", "mode", "backend", "dataset", "n_samples", "configs", "failed", "smallest"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    listed = (rows.groupby("scan_id", sort=False)
              .agg(timestamp=("timestamp", "first"), mode=("mode", "first"), backend=("backend", "first"),
                   dataset=("dataset", "first"), n_samples=("n_samples", "first"), configs=("config", "size"),
                   failed=("status", lambda s: int((s != "ok").sum())))
              .reset_index())
    best = rows[rows["smallest"].fillna(False).astype(bool)].drop_duplicates("scan_id").set_index("scan_id")["config"]
    listed["smallest"] = listed["scan_id"].map(best)
    return listed[columns].sort_values("timestamp", ascending=False, kind="stable").reset_index(drop=True)


def scan_rows(scans: pd.DataFrame, scan_id: str) -> pd.DataFrame:
    """The configurations of one scan, fewest bits first, with `line`: the curve each belongs to
    (integer bits "I=4" in a global scan, "per-layer" in a per-layer one)."""
    rows = scans[scans["scan_id"].astype(str) == str(scan_id)]
    rows = rows.sort_values(["width", "integer_bits"], na_position="last", kind="stable").reset_index(drop=True)
    lines = [PER_LAYER if mode == PER_LAYER or pd.isna(bits) else f"I={int(bits)}"
             for mode, bits in zip(rows["mode"], rows["integer_bits"])]
    return rows.assign(line=lines, smallest=rows["smallest"].fillna(False).astype(bool))


def bound_given(rows: pd.DataFrame) -> bool:
    """Whether the scan was run with a bound (max_auc_drop / min_agreement): only then are `meets`
    and `smallest` filled."""
    return bool(rows["meets"].notna().any())


def smallest_row(rows: pd.DataFrame) -> pd.Series | None:
    """The configuration yukti.scan marked as the cheapest one meeting the bound, if any."""
    marked = rows[rows["smallest"].fillna(False).astype(bool)]
    return marked.iloc[0] if len(marked) else None


def _json_object(text: object) -> dict:
    if not isinstance(text, str) or not text:
        return {}
    try:
        parsed = json.loads(text)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def overflow_counts(row: pd.Series | dict) -> pd.DataFrame:
    """Per hls4ml layer, how many values one configuration wrapped or saturated (from its
    `overflow_layers` JSON), in the order the scan listed the layers; layers without any are absent."""
    counts = _json_object(row.get("overflow_layers"))
    return pd.DataFrame({"layer": [str(k) for k in counts], "overflows": [int(v) for v in counts.values()]})


def layer_ranges(row: pd.Series | dict, profile: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per layer, the range one configuration's result type can represent ([-2^(I-1), 2^(I-1)) for
    ap_fixed<W,I>) next to the float range the profile measured, if one is given.

    The type of a layer: its `result` in a per-layer scan's `layer_precision`, else the scan's
    model-wide `precision` (every layer of a global scan; in a per-layer scan the layers the
    profile left to the default, like the softmax). Columns: layer, class, type, source ("layer"
    or "model default"), lowest, highest, and with a profile float_min, float_max, abs_p999 and
    fits (the float range lies inside the type's)."""
    per_layer = {str(k): v.get("result") for k, v in _json_object(row.get("layer_precision")).items()
                 if isinstance(v, dict) and v.get("result")}
    default = row.get("precision")
    if profile is not None and not profile.empty:
        layers = [(str(r["layer"]), str(r["class"])) for r in profile.to_dict("records")]
    else:
        layers = [(name, "") for name in per_layer] or [("(every layer)", "")]
    records = []
    for layer, kind in layers:
        text = per_layer.get(layer, default)
        try:
            fixed = FixedType.parse(text)
        except PrecisionError:  # an unparsable type is shown as such, not dropped
            fixed = None
        records.append({"layer": layer, "class": kind, "type": str(text),
                        "source": "layer" if layer in per_layer else "model default",
                        "lowest": fixed.lowest if fixed else float("nan"),
                        "highest": fixed.highest if fixed else float("nan")})
    frame = pd.DataFrame(records, columns=["layer", "class", "type", "source", "lowest", "highest"])
    if profile is None or profile.empty:
        return frame
    measured = profile.assign(layer=profile["layer"].astype(str)).set_index("layer")
    for source, column in (("min", "float_min"), ("max", "float_max"), ("abs_p999", "abs_p999")):
        values = measured[source] if source in measured.columns else pd.Series(dtype=float)
        frame[column] = pd.to_numeric(frame["layer"].map(values), errors="coerce")
    # a layer the profile has no values for (say one whose output it could not read) is unknown, not "fits"
    known = frame[["float_min", "float_max"]].notna().all(axis=1)
    inside = (frame["float_min"] >= frame["lowest"]) & (frame["float_max"] <= frame["highest"])
    frame["fits"] = inside.where(known).astype("boolean")
    return frame


# -- the kernel sweep (benchmarks/kernel_sweep.py) ----------------------------------------------------

KERNEL_SWEEP_FOLDER = "kernel_sweep"  # in the results store, as benchmarks/kernel_sweep.py writes it
KERNEL_SWEEP_COMMAND = "python benchmarks/kernel_sweep.py"
KERNEL_SWEEP_KEYS = ("K", "N", "batch", "ratio")  # what a file needs to be drawn
KERNEL_GRID_VALUES = ("ratio", "cpp_us", "ort_us", "gflops")


def kernel_sweep_folder(store: str | os.PathLike | None = None) -> Path:
    return store_path(store) / KERNEL_SWEEP_FOLDER


def kernel_sweep_files(store: str | os.PathLike | None = None) -> list[Path]:
    """The stored sweeps (.parquet, or .csv written with --out there), newest first: their names
    begin with the UTC time they were written."""
    folder = kernel_sweep_folder(store)
    if not folder.is_dir():
        return []
    files = [p for p in folder.iterdir()  # a leading dot: the temp file of a writer at work
             if p.is_file() and p.suffix.lower() in (".parquet", ".csv") and not p.name.startswith(".")]
    return sorted(files, key=lambda p: p.name, reverse=True)


def kernel_sweep_fingerprint(store: str | os.PathLike | None = None) -> tuple[tuple[str, int, int], ...]:
    """Names, sizes and modification times of the stored sweeps (a cache key, as `store_fingerprint`)."""
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in kernel_sweep_files(store))


def load_kernel_sweep(path: str | os.PathLike) -> pd.DataFrame:
    """One sweep's table (K, N, batch, cpp_us, ort_us, ratio, gflops, ...); InputError naming the
    file when it cannot be read or lacks the columns a heatmap needs."""
    path = Path(path)
    try:
        frame = pd.read_csv(path) if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except Exception as exc:  # any reader error: one bad file must not break the page
        raise InputError(f"{path.name} is not a readable kernel sweep ({type(exc).__name__}: {exc})") from None
    missing = [c for c in KERNEL_SWEEP_KEYS if c not in frame.columns]
    if missing:
        raise InputError(f"{path.name} is not a kernel sweep: no column(s) {', '.join(missing)}")
    for column in ("K", "N", "batch"):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=["K", "N", "batch"]).astype({"K": int, "N": int, "batch": int})
    for column in (c for c in KERNEL_GRID_VALUES if c in frame.columns):
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    return frame.reset_index(drop=True)


def kernel_grid(sweep: pd.DataFrame, batch: int) -> dict[str, pd.DataFrame]:
    """At one batch size, each of ratio, cpp_us, ort_us, gflops (those the sweep has) as a K x N
    table: rows K and columns N ascending, NaN where a cell was not measured."""
    rows = sweep[sweep["batch"] == batch]
    ks, ns = sorted(rows["K"].unique()), sorted(rows["N"].unique())
    return {column: rows.pivot_table(index="K", columns="N", values=column, aggfunc="median", dropna=False)
            .reindex(index=ks, columns=ns)
            for column in KERNEL_GRID_VALUES if column in rows.columns}


def kernel_worst(sweep: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The `n` cells with the highest ratio (cpp slowest against onnxruntime), worst first."""
    columns = [c for c in ("K", "N", "batch", "cpp_us", "ort_us", "ratio", "gflops", "pct_of_peak", "status")
               if c in sweep.columns]
    return sweep.dropna(subset=["ratio"]).sort_values("ratio", ascending=False, kind="stable")[columns].head(n)


# -- the quick benchmark ----------------------------------------------------------------------------

QUICK_MODEL = "jet_dnn"
QUICK_BATCHES = (1, 1024)
QUICK_POLICY = dict(time_budget_s=0.2, min_calls=50, warmup_calls=5, warmup_s=0.02)


def quick_benchmark(backends: Sequence[str] | None = None, *, store: str | os.PathLike | None = None,
                    on_step: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Benchmark the embedded default (jet_dnn on jets_synthetic) at batch 1 and 1024 with a short
    timing policy, stored as one run with its fidelity curves; `on_step` follows each backend."""
    step = on_step or (lambda fraction, text: None)
    step(0.0, f"training or loading {QUICK_MODEL} (first use trains it)")
    model = yukti.zoo.get(QUICK_MODEL)
    frame = yukti.benchmark(model, backends=list(backends) if backends else None, batch_sizes=QUICK_BATCHES,
                            policy=yukti.TimingPolicy(**QUICK_POLICY), store=str(store_path(store)), progress=step)
    step(1.0, "done")
    return frame


# -- measuring from the dashboard (the Measure page) ------------------------------------------------

MEASURE_BATCHES = (1, 8, 64, 256, 1024, 4096)
MEASURE_DEFAULT_BATCHES = (1, 64, 1024)
# Backends that prepare in seconds: hls4ml, fixed and torch_aot compile when prepared (slow), and
# timing the reference (ONNX's Python evaluator) at large batches is slow too; the user can add them.
MEASURE_DEFAULT_BACKENDS = ("onnxruntime", "torch", "cpp")
MEASURE_POLICY = dict(min_calls=50, warmup_calls=5, warmup_s=0.02)
MEASURE_BUDGET_S = 0.2  # seconds per (backend, batch size): the page's default, like the quick benchmark's
MEASURE_EVAL_SAMPLES = 20_000  # yukti.benchmark's default max_eval_samples
UPLOAD_DATA_TYPES = ("parquet", "csv", "npz")
NO_LABELS = "(no labels)"
_TABLE_SUFFIXES = (".parquet", ".pq", ".csv")
LABEL_GUESSES = ("target", "label", "labels", "class", "y")  # the label column preselected, when a table has one
UPLOAD_FORMS = ("a .parquet or .csv table (pick its label column, or no labels; every other numeric column is a "
                "feature, in column order), a .npz holding an array X (and optionally labels y), or for a "
                "multi-input model a .npz holding one array per model input name (and optionally y)")


def upload_name(filename: str, fallback: str = "model") -> str:
    """A safe name from an uploaded file's name: its stem as an identifier (yukti.safe_names). The
    name of an untrusted file reaches stored results, file names and generated code."""
    stem = re.split(r"[\\/]", filename)[-1]  # a browser may send a path; only the last part is the name
    stem = stem.rsplit(".", 1)[0] if "." in stem.lstrip(".") else stem
    return safe_names.identifier(stem, fallback=fallback)


def load_uploaded_model(filename: str, raw: bytes) -> yukti.Model:
    """An uploaded ONNX file as a Model named after the file. A model file is untrusted: every
    failure to read it is a ModelLoadError naming the file (the page shows it)."""
    if not raw:
        raise ModelLoadError(f"{filename}: the file is empty (expected a serialized ONNX model)")
    try:
        return yukti.load(bytes(raw), name=upload_name(filename))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{filename}: {exc}") from None


def model_summary(model: yukti.Model) -> str:
    """One line naming the model's inputs and outputs with their shapes and types."""
    inputs = "; ".join(spec.describe() for spec in model.inputs)
    outputs = "; ".join(spec.describe() for spec in model.outputs)
    return f"inputs {inputs} → outputs {outputs}"


def _suffix(filename: str) -> str:
    name = re.split(r"[\\/]", filename)[-1]
    return "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""


def read_upload_table(filename: str, raw: bytes) -> pd.DataFrame:
    """An uploaded .parquet or .csv file as a DataFrame; InputError naming the file otherwise."""
    suffix = _suffix(filename)
    if suffix not in _TABLE_SUFFIXES:
        raise InputError(f"{filename} is not a table (.parquet or .csv); the Measure page reads {UPLOAD_FORMS}")
    kind = "CSV" if suffix == ".csv" else "Parquet"
    try:
        return pd.read_csv(io.BytesIO(raw)) if suffix == ".csv" else pd.read_parquet(io.BytesIO(raw))
    except Exception as exc:  # any parser error: the file is the user's, the message must say which
        raise InputError(f"{filename} could not be read as {kind}: {type(exc).__name__}: {exc}") from None


def default_label(columns: Sequence[object]) -> str:
    """The label column to preselect: the first of LABEL_GUESSES a table has (any case), else NO_LABELS."""
    by_lower = {str(c).lower(): str(c) for c in columns}
    return next((by_lower[g] for g in LABEL_GUESSES if g in by_lower), NO_LABELS)


def read_uploaded_data(name: str, raw_bytes: bytes, target: str | None, model: yukti.Model | None = None, *,
                       check: bool = True) -> Dataset:
    """Uploaded data as a Dataset: a .parquet/.csv table with `target` its label column (None or
    NO_LABELS: unlabelled), or a .npz of X (and y) or of one array per model input (and y); read as
    yukti.datasets reads a table (`from_frame`) and arrays (`as_dataset`). With `model` and `check`,
    the data must fit the model (`check_fits`). Every problem is an InputError naming the forms."""
    target = None if target in (None, "", NO_LABELS) else target
    stem = upload_name(name, fallback="data")
    suffix = _suffix(name)
    if suffix in _TABLE_SUFFIXES:
        frame = read_upload_table(name, raw_bytes)
        if target is not None and target not in frame.columns:
            raise InputError(f"{name}: no label column {target!r}; its columns are {[str(c) for c in frame.columns]}")
        try:
            dataset = datasets.from_frame(frame, target, name=stem, origin=f"uploaded table {name}")
        except InputError:
            raise
        except (YuktiError, ValueError, TypeError) as exc:  # e.g. no numeric column, text in a feature
            raise InputError(f"{exc}. The Measure page reads {UPLOAD_FORMS}") from None
    elif suffix == ".npz":
        dataset = _read_npz(name, raw_bytes, model, stem)
    else:
        raise InputError(f"{name}: files ending {suffix or '(no suffix)'} are not read here; "
                         f"the Measure page reads {UPLOAD_FORMS}")
    if check and model is not None:
        check_fits(dataset, model)
    return dataset


def _read_npz(name: str, raw: bytes, model: yukti.Model | None, stem: str) -> Dataset:
    try:
        # allow_pickle=False: an object array in an uploaded file would run code when unpickled
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as exc:
        raise InputError(f"{name} could not be read as .npz (numpy.savez, no object arrays): "
                         f"{type(exc).__name__}: {exc}") from None
    labels = arrays.pop("y", None)
    input_names = [spec.name for spec in model.inputs] if model is not None else []
    if set(arrays) == {"X"}:
        features: object = arrays["X"]
    elif input_names and set(arrays) == set(input_names):
        features = arrays
    else:
        wanted = f"X, or one array per model input {input_names}," if input_names else "X"
        raise InputError(f"{name} holds arrays {sorted([*arrays, *(['y'] if labels is not None else [])])}; expected "
                         f"{wanted} (and optionally y). The Measure page reads {UPLOAD_FORMS}")
    try:
        dataset = datasets.as_dataset((features, labels) if labels is not None else features, model)
    except InputError as exc:
        raise InputError(f"{name}: {exc}") from None
    except (ValueError, TypeError) as exc:  # e.g. text in X: not numbers the Dataset can hold
        raise InputError(f"{name}: {type(exc).__name__}: {exc}. The Measure page reads {UPLOAD_FORMS}") from None
    return replace(dataset, name=stem, description=f"uploaded {name}" + (", labels given" if labels is not None else ""))


def check_fits(dataset: Dataset, model: yukti.Model, n_max: int = MEASURE_EVAL_SAMPLES) -> None:
    """Raise InputError when `dataset` does not fit `model` (input count, width, dtype, non-finite
    values): the very check yukti.benchmark makes (`yukti.engine.resolve_data`) on the samples it
    would measure, with the data forms this page reads appended."""
    try:
        engine.resolve_data(model, dataset, n_max)
    except InputError as exc:
        names = [spec.name for spec in model.inputs]
        raise InputError(f"{exc}. Model {model.name!r} takes {model_summary(model)}; "
                         f"the Measure page reads {UPLOAD_FORMS} (input names: {names})") from None


def describe_data(dataset: Dataset, model: yukti.Model | None = None) -> pd.DataFrame:
    """What was read, as `item`, `value` text rows: the data's name, samples, the shape of one
    sample per input (named after the model's inputs when `model` is given), and the classes
    (index and name, as the metrics read them) with their counts, or that there are no labels."""
    arrays = list(dataset.inputs) if dataset.inputs is not None else [dataset.X]
    if model is not None and len(model.inputs) == len(arrays):
        items = [f"input {spec.name!r}" for spec in model.inputs]
    else:
        items = ["features"] if len(arrays) == 1 else [f"input {i}" for i in range(len(arrays))]
    rows = [("data", dataset.label), ("samples", f"{len(dataset):,}")]
    rows += [(item, f"{tuple(a.shape[1:])} {a.dtype} per sample") for item, a in zip(items, arrays)]
    if dataset.y is None:
        rows.append(("labels", "none: fidelity to the reference only (no accuracy or AUC)"))
    else:
        counts = np.bincount(dataset.y, minlength=len(dataset.class_names)) if len(dataset.y) else []
        signal = f"; signal class {dataset.signal_name!r}" if dataset.class_names else ""
        rows.append(("classes", f"{len(dataset.class_names)}{signal}"))
        rows += [(f"class {i}: {c}", f"{int(n):,}") for i, (c, n) in enumerate(zip(dataset.class_names, counts))]
    if dataset.description:
        rows.append(("about", dataset.description))
    return pd.DataFrame(rows, columns=["item", "value"])


def raw_data_note(model: yukti.Model, dataset: Dataset) -> str | None:
    """A warning when a zoo model, trained on preprocessed data, is given other data: a dataset read
    by name is raw, so its accuracy numbers are not the model's (fidelity still holds)."""
    own = model.data
    preprocessing = own.meta.get("preprocessing") if own is not None else None
    if not preprocessing or dataset is own:
        return None
    return (f"{model.name} was trained on data {preprocessing}; {dataset.label} is read as it is, so its accuracy "
            "and AUC are not the model's. Fidelity to the reference still holds. The model's own evaluation data "
            "is preprocessed.")


def measure(model: yukti.Model, dataset: Dataset | None, backends: Sequence[str], batch_sizes: Sequence[int], *,
            time_budget_s: float = MEASURE_BUDGET_S, max_eval_samples: int = MEASURE_EVAL_SAMPLES,
            store: str | os.PathLike | None = None, on_step: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """yukti.benchmark of `model` on `dataset` (None: random inputs) with a short timing policy,
    stored as one run in the dashboard's store (`store_path`); `on_step` follows each step."""
    step = on_step or (lambda fraction, text: None)
    policy = yukti.TimingPolicy(time_budget_s=time_budget_s, **MEASURE_POLICY)
    frame = yukti.benchmark(model, backends=list(backends), batch_sizes=[int(b) for b in batch_sizes], data=dataset,
                            policy=policy, max_eval_samples=int(max_eval_samples), store=str(store_path(store)),
                            progress=step)
    step(1.0, "done")
    return frame


MEASURED_COLUMNS = ("backend", "options", "batch_size", "status", "latency_p50_us", "latency_p99_us",
                    "throughput_per_s", "argmax_agreement", "auc", "accuracy_drop", "max_abs_diff", "max_rel_error",
                    "error")


def measured_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows just measured, for the page: MEASURED_COLUMNS that have a value, options as text."""
    keep = [c for c in MEASURED_COLUMNS if c in frame.columns
            and (c in ("backend", "batch_size", "status") or frame[c].notna().any())]
    table = frame[keep].copy()
    if "options" in table.columns:
        table["options"] = [options_text(o) if isinstance(o, str) else options_text(json.dumps(o, default=str))
                            for o in table["options"]]
    return table.reset_index(drop=True)
