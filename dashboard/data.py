"""Data for the dashboard: loading the results store and asv history, derived metrics, the Pareto
front, the plain chooser, step flags, efficiency curves and the quick benchmark.

No Streamlit here: the pages wrap these functions in `st.cache_data` / `st.cache_resource`, and the
tests call them directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

import yukti
from yukti import results

REFERENCE_BACKEND = "reference"
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    higher_is_better: bool = False
    log: bool = False  # spans orders of magnitude: plot on a log axis


# Every numeric column a page may plot. Direction matters for step flags and the Pareto front:
# a drop in throughput is as much a regression as a rise in latency.
METRICS: dict[str, Metric] = {m.column: m for m in [
    Metric("latency_p50_us", "latency p50 (µs)", log=True),
    Metric("latency_p90_us", "latency p90 (µs)", log=True),
    Metric("latency_p99_us", "latency p99 (µs)", log=True),
    Metric("latency_mean_us", "latency mean (µs)", log=True),
    Metric("latency_native_p50_us", "native latency p50 (µs)", log=True),
    Metric("throughput_per_s", "throughput (samples/s)", higher_is_better=True, log=True),
    Metric("accuracy_loss", "accuracy loss (1 − argmax agreement)"),
    Metric("auc_drop", "AUC drop vs reference"),
    Metric("argmax_agreement", "argmax agreement", higher_is_better=True),
    Metric("max_abs_diff", "max |Δ| vs reference", log=True),
    Metric("mean_abs_diff", "mean |Δ| vs reference", log=True),
    Metric("auc", "AUC", higher_is_better=True),
    Metric("eff_at_bkg_1pct", "signal eff. at 1% bkg", higher_is_better=True),
    Metric("eff_at_bkg_10pct", "signal eff. at 10% bkg", higher_is_better=True),
    Metric("prepare_s", "prepare time (s)", log=True),
    Metric("artifact_bytes", "artifact size (bytes)", log=True),
    Metric("peak_rss_mb", "peak RSS (MB)"),
    Metric("rss_prepare_mb", "RSS added by prepare (MB)"),
]}

# Distinguish one configuration of a backend from another (threads, precision, ...).
CONFIG_KEYS = ["model", "backend", "options", "batch_size"]


def metric_label(column: str) -> str:
    return METRICS[column].label if column in METRICS else column


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


def with_derived(frame: pd.DataFrame, group: Sequence[str] = ("run_id", "model")) -> pd.DataFrame:
    """Add `accuracy_loss` (1 − argmax agreement) and `auc_drop` (reference AUC − AUC, within the
    same run: the reference of another run may have seen other data)."""
    frame = frame.copy()
    frame["accuracy_loss"] = 1.0 - pd.to_numeric(frame["argmax_agreement"], errors="coerce")
    auc = pd.to_numeric(frame["auc"], errors="coerce")
    group = [g for g in group if g in frame.columns]
    if frame.empty or not group:
        frame["auc_drop"] = np.nan
        return frame
    ref = (frame.assign(_ref_auc=auc)[frame["backend"] == REFERENCE_BACKEND]
           .groupby(group, dropna=False)["_ref_auc"].first().reset_index())
    ref_auc = frame[group].merge(ref, on=group, how="left")["_ref_auc"].to_numpy(dtype=float)  # left merge keeps row order
    frame["auc_drop"] = ref_auc - auc.to_numpy(dtype=float)
    return frame


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


# -- Pareto front -----------------------------------------------------------------------------------

def pareto(frame: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """The non-dominated rows (all objectives minimized), by the library's own definition
    (`yukti.pareto`), so the dashboard and `yukti.choose` never disagree on the front."""
    return yukti.pareto(frame, objectives=tuple(objectives))


# -- choosing a backend from stored results ----------------------------------------------------------

@dataclass
class Choice:
    table: pd.DataFrame  # every candidate, those meeting the constraints first, best first
    winner: str | None   # backend of the best candidate meeting every constraint
    winner_options: dict[str, Any]
    source: str          # "yukti.choose" or "stored results (plain filter)"
    note: str = ""


def rank(frame: pd.DataFrame, model: str, *, batch_size: int, max_p99_us: float | None = None,
         max_accuracy_loss: float | None = None, backends: Sequence[str] | None = None) -> pd.DataFrame:
    """Latest measurements of `model` at `batch_size`, with `meets` (every constraint holds) and
    `why_not`; ranked by meeting the constraints, then p99 latency, then accuracy loss."""
    rows = latest(frame)
    rows = rows[(rows["model"] == model) & (rows["batch_size"] == batch_size)]
    if backends is not None:
        rows = rows[rows["backend"].isin(list(backends))]
    rows = rows.copy()
    reasons: list[str] = []
    for _, row in rows.iterrows():
        why = []
        p99, loss = row["latency_p99_us"], row["accuracy_loss"]
        if max_p99_us is not None and not (pd.notna(p99) and p99 <= max_p99_us):
            why.append(f"p99 {p99:.3g} µs > {max_p99_us:g} µs")
        if max_accuracy_loss is not None and not (pd.notna(loss) and loss <= max_accuracy_loss):
            why.append(f"accuracy loss {loss:.3g} > {max_accuracy_loss:g}")
        reasons.append("; ".join(why))
    rows["why_not"] = reasons
    rows["meets"] = rows["why_not"] == ""
    rows = rows.sort_values(["meets", "latency_p99_us", "accuracy_loss"], ascending=[False, True, True], kind="stable")
    return rows.reset_index(drop=True)


def choose(frame: pd.DataFrame, model: str, *, batch_size: int, max_p99_us: float | None = None,
           max_accuracy_loss: float | None = None, backends: Sequence[str] | None = None) -> Choice:
    """The chooser on stored results, measuring nothing.

    `yukti.choose(..., measure="never", stored=frame)` first: it reuses only rows measured on this
    host for the same model hash, backend version, options and data, so its answer holds here. When
    it has no such row (results copied from another machine, an older model, a model not loadable
    here), the stored rows are ranked as they are, and the note says so."""
    note = ""
    if hasattr(yukti, "choose"):
        try:
            chosen = yukti.choose(model, batch_size=batch_size, max_p99_us=max_p99_us,
                                  max_accuracy_drop=max_accuracy_loss,
                                  backends=list(backends) if backends else None, measure="never", stored=frame)
            if any(getattr(c, "measured", False) for c in chosen):
                winner = chosen.winner
                return Choice(table=chosen.table(), winner=None if winner is None else str(winner.backend),
                              winner_options=dict(winner.options) if winner is not None else {}, source="yukti.choose")
            note = ("yukti.choose found no stored row measured on this host for this model's current hash, backend "
                    "versions and options; ranking the stored rows as they are.")
        except Exception as exc:  # the page must still answer from the stored numbers
            note = f"yukti.choose could not answer ({type(exc).__name__}: {exc}); ranking the stored rows as they are."
    table = rank(frame, model, batch_size=batch_size, max_p99_us=max_p99_us,
                 max_accuracy_loss=max_accuracy_loss, backends=backends)
    met = table[table["meets"]]
    winner = None if met.empty else str(met["backend"].iloc[0])
    options = json.loads(met["options"].iloc[0]) if not met.empty and isinstance(met["options"].iloc[0], str) else {}
    return Choice(table=table, winner=winner, winner_options=options, source="stored results (plain filter)", note=note)


def snippet(model: str, backend: str, options: object = None, *, batch_size: int = 1) -> str:
    """Python that loads `model` and runs it on `backend` with the measured options."""
    from yukti import zoo

    load = f"yukti.zoo.get({model!r})" if model in zoo.names() else f"yukti.load({model + '.onnx'!r})  # your model file"
    opts = json.loads(options) if isinstance(options, str) and options else {}
    if len(opts) <= 2:
        call = f"run = yukti.runner({backend!r}, model{''.join(f', {k}={v!r}' for k, v in sorted(opts.items()))})  # prepared once, cached"
    else:  # the measured options, one per line, so the snippet stays readable
        call = "\n".join([f"run = yukti.runner(  # prepared once, cached", f"    {backend!r}, model,",
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
    line. Direction comes from METRICS: a throughput drop is a regression, as is a latency rise."""
    higher_better = METRICS[metric].higher_is_better if metric in METRICS else False
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


# -- fidelity curves --------------------------------------------------------------------------------

def efficiency_curve(scores: np.ndarray, is_signal: np.ndarray, n_points: int = 400) -> pd.DataFrame:
    """Signal efficiency against background efficiency (the ROC curve in trigger terms), thinned to
    `n_points` log-spaced background efficiencies so a chart stays light at any sample count."""
    from sklearn.metrics import roc_curve

    bkg, sig, _ = roc_curve(is_signal, scores)
    n_bkg = max(int((~is_signal).sum()), 1)
    grid = np.unique(np.concatenate([np.geomspace(1.0 / n_bkg, 1.0, n_points), [0.01, 0.1]]))
    return pd.DataFrame({"bkg_eff": grid, "sig_eff": np.interp(grid, bkg, sig)})


def fidelity_curves(outputs: dict[str, np.ndarray], labels: np.ndarray, signal_class: int,
                    reference: str = REFERENCE_BACKEND) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """From each backend's outputs on the same labelled samples: efficiency curves (long frame),
    histograms of log10 |output − reference| (long frame), and a summary per backend."""
    from sklearn.metrics import roc_auc_score

    from yukti.metrics import signal_score

    is_signal = np.asarray(labels) == signal_class
    ref = np.asarray(outputs[reference], dtype=np.float64).reshape(len(labels), -1) if reference in outputs else None
    curves, hists, summary = [], [], []
    edges = np.arange(-12.0, 1.01, 0.25)  # float32 rounding (~1e-8) to visible errors (~1)
    for backend, out in outputs.items():
        out = np.asarray(out, dtype=np.float64).reshape(len(labels), -1)
        score = signal_score(out, signal_class)
        curves.append(efficiency_curve(score, is_signal).assign(backend=backend))
        row: dict[str, Any] = {"backend": backend, "auc": float(roc_auc_score(is_signal, score))}
        if ref is not None and backend != reference:
            diff = np.abs(out - ref).ravel()
            nonzero = diff[diff > 0]
            counts, _ = np.histogram(np.log10(nonzero), bins=edges) if len(nonzero) else (np.zeros(len(edges) - 1), None)
            hists.append(pd.DataFrame({"log10_abs_diff": (edges[:-1] + edges[1:]) / 2, "count": counts, "backend": backend}))
            row.update(max_abs_diff=float(diff.max()), exact_zero_fraction=float((diff == 0).mean()))
        summary.append(row)
    hist = pd.concat(hists, ignore_index=True) if hists else pd.DataFrame(columns=["log10_abs_diff", "count", "backend"])
    if len(hist) and (hist["count"] > 0).any():  # show only the range where some backend has differences
        filled = hist.loc[hist["count"] > 0, "log10_abs_diff"]
        hist = hist[hist["log10_abs_diff"].between(filled.min() - 0.5, filled.max() + 0.5)].reset_index(drop=True)
    return pd.concat(curves, ignore_index=True), hist, pd.DataFrame(summary)


def run_options(frame: pd.DataFrame, model: str, backend: str) -> dict[str, Any]:
    """The options of the latest successful measurement of `backend` on `model`."""
    rows = latest(frame)
    rows = rows[(rows["model"] == model) & (rows["backend"] == backend)]
    if rows.empty or not isinstance(rows["options"].iloc[-1], str):
        return {}
    return json.loads(rows["options"].iloc[-1])


def backend_outputs(backend: str, model: Any, X: np.ndarray, options: dict[str, Any] | None = None,
                    chunk: int = 1024) -> np.ndarray:
    """`backend`'s first output on every sample of X (prepared through the artifact cache)."""
    from yukti.engine import evaluate

    run = yukti.runner(backend, model, **(options or {}))
    return evaluate(run, model.validate_inputs(X), chunk=chunk)


# -- the quick benchmark ----------------------------------------------------------------------------

QUICK_MODEL = "jet_dnn"
QUICK_BATCHES = (1, 1024)
QUICK_POLICY = dict(time_budget_s=0.2, min_calls=50, warmup_calls=5, warmup_s=0.02)


def quick_benchmark(backends: Sequence[str] | None = None, *, store: str | os.PathLike | None = None,
                    on_step: Callable[[float, str], None] | None = None) -> pd.DataFrame:
    """Benchmark the embedded default (jet_dnn on jets_synthetic) at batch 1 and 1024 with a short
    timing policy, one backend at a time so a progress bar can follow; stored as one run."""
    step = on_step or (lambda fraction, text: None)
    names = list(backends) if backends else yukti.registry.names()
    step(0.0, f"training or loading {QUICK_MODEL} (first use trains it)")
    model = yukti.zoo.get(QUICK_MODEL)
    policy = yukti.TimingPolicy(**QUICK_POLICY)
    frames = []
    for i, name in enumerate(names):
        step(i / len(names), f"measuring {name} ({i + 1}/{len(names)})")
        frames.append(yukti.benchmark(model, backends=[name], batch_sizes=QUICK_BATCHES, policy=policy, store=False))
    frame = pd.concat(frames, ignore_index=True)
    frame["run_id"] = frames[0]["run_id"].iloc[0]  # one run, as `yukti bench` would store it
    results.append(frame, store_path(store))
    step(1.0, "done")
    return frame

