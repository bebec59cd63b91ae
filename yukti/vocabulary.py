"""The metrics vocabulary: one owner for every metric's column, label, unit, direction, task and derivation.

The engine, the results store, the chooser, the command line, the dashboard and the asv suite read
names, labels, units and directions from here; a column derived from others (accuracy drop, AUC
drop, ...) is computed here and nowhere else (`derive`).

Stored columns hold what was measured. Derived columns are computed when a frame is read
(`yukti.results.load`, `from_asv`, the frame `yukti.benchmark` returns), so stores written before a
derived column existed read the same. An old name of a column (`Metric.aliases`) is still read:
`derive` renames it, and `column_of` maps it for callers such as `yukti.pareto`.

Tasks (`TASKS`): what a model's outputs mean, hence which fidelity metrics apply
(`yukti.metrics.fidelity`):

- classification: argmax agreement with the reference, AUC, signal efficiency at fixed background;
- regression: absolute and relative error against the reference, resolution;
- anomaly: an autoencoder; score = reconstruction error per sample; the regression metrics of the
  reconstruction, the relative error of the score, and on labelled data (signal = anomalous) the
  score's AUC and efficiency at a fixed false-positive (background) rate.

This module imports only the standard library at import time (the asv suite loads it per process).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

CLASSIFICATION, REGRESSION, ANOMALY = "classification", "regression", "anomaly"
TASKS = (CLASSIFICATION, REGRESSION, ANOMALY)

# Rows of one run share a reference: per-run derivations (the reference's AUC) group by these.
RUN_KEYS = ("run_id", "model")
REFERENCE_BACKEND = "reference"

Derive = Callable[["pd.DataFrame", Sequence[str]], "pd.Series"]


@dataclass(frozen=True)
class Metric:
    """One metric: where it lives (`column`), how it reads (`label`, `unit`, `short` for table
    headers), which way is better, which tasks it belongs to (empty: every task) and, for a derived
    column, how it is computed from the frame's other columns."""

    column: str
    label: str
    unit: str = ""
    higher_is_better: bool = False
    task: tuple[str, ...] = ()
    derive: Derive | None = None
    short: str = ""
    log: bool = False  # spans orders of magnitude: plot on a log axis
    aliases: tuple[str, ...] = ()  # older names of this column, still read

    @property
    def title(self) -> str:
        """Axis title: the label with its unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    @property
    def header(self) -> str:
        return self.short or self.label

    def applies_to(self, task: str | None) -> bool:
        return not self.task or task is None or task in self.task


# -- derivations (pandas imported on use) ------------------------------------------------------

def _numeric(frame: "pd.DataFrame", column: str) -> "pd.Series":
    import pandas as pd

    if column not in frame.columns:
        return pd.Series(float("nan"), index=frame.index, dtype=float)
    return pd.to_numeric(frame[column], errors="coerce").astype(float)


def _one_minus(column: str) -> Derive:
    return lambda frame, run_keys: 1.0 - _numeric(frame, column)


def _reference_auc(frame: "pd.DataFrame", run_keys: Sequence[str]) -> "pd.Series":
    """The AUC of the run's reference backend: the baseline measured on the same samples."""
    import pandas as pd

    keys = [k for k in run_keys if k in frame.columns]
    auc = _numeric(frame, "auc")
    if frame.empty or not keys or "backend" not in frame.columns:
        return pd.Series(float("nan"), index=frame.index, dtype=float)
    is_reference = (frame["backend"] == REFERENCE_BACKEND).fillna(False).to_numpy(dtype=bool)
    refs = (frame[keys].assign(_ref_auc=auc)[is_reference & auc.notna().to_numpy()]
            .groupby(keys, dropna=False)["_ref_auc"].first().reset_index())
    merged = frame[keys].merge(refs, on=keys, how="left")["_ref_auc"]  # a left merge keeps the row order
    return pd.Series(merged.to_numpy(dtype=float), index=frame.index)


def _auc_drop(frame: "pd.DataFrame", run_keys: Sequence[str]) -> "pd.Series":
    return _numeric(frame, "reference_auc") - _numeric(frame, "auc")


def _gflops(frame: "pd.DataFrame", run_keys: Sequence[str]) -> "pd.Series":
    """Achieved FP32 rate: FLOP per sample (yukti.roofline's count) x samples/s / 1e9."""
    return _numeric(frame, "flop_per_sample") * _numeric(frame, "throughput_per_s") / 1e9


def _pct_of_peak(frame: "pd.DataFrame", run_keys: Sequence[str]) -> "pd.Series":
    """The achieved rate as a share of the host's FP32 FMA peak at the row's threads (`peak_gflops`)."""
    peak = _numeric(frame, "peak_gflops")
    return 100.0 * _numeric(frame, "gflops") / peak.where(peak > 0)


_C, _R, _A = (CLASSIFICATION,), (REGRESSION,), (ANOMALY,)

# The order is the order of tables and pickers. Derived metrics come after what they derive from.
METRICS: dict[str, Metric] = {m.column: m for m in [
    # timing and cost: every task
    Metric("latency_p50_us", "p50 latency", "µs", short="p50 µs", log=True),
    Metric("latency_p90_us", "p90 latency", "µs", short="p90 µs", log=True),
    Metric("latency_p99_us", "p99 latency", "µs", short="p99 µs", log=True),
    Metric("latency_mean_us", "mean latency", "µs", short="mean µs", log=True),
    Metric("latency_std_us", "latency std", "µs", short="std µs", log=True),
    Metric("latency_native_p50_us", "native p50 latency", "µs", short="native p50 µs", log=True),
    Metric("throughput_per_s", "throughput", "samples/s", higher_is_better=True, short="samples/s", log=True),
    # roofline: from the stored flop_per_sample and peak_gflops (yukti.roofline; the engine stores both)
    Metric("gflops", "achieved FP32 rate", "GFLOP/s", higher_is_better=True, derive=_gflops, short="GFLOP/s", log=True),
    Metric("pct_of_peak", "share of FP32 FMA peak", "%", higher_is_better=True, derive=_pct_of_peak, short="% peak"),
    Metric("prepare_s", "prepare time", "s", short="prepare s", log=True),
    Metric("artifact_bytes", "artifact size", "bytes", short="artifact B", log=True),
    Metric("peak_rss_mb", "peak RSS", "MB", short="peak MB"),
    Metric("rss_prepare_mb", "RSS added by prepare", "MB", short="prepare MB"),
    # fidelity to the reference: every task
    Metric("max_abs_diff", "max |Δ| vs reference", "output units", short="max |Δ|", log=True),
    Metric("mean_abs_diff", "mean |Δ| vs reference", "output units", short="mean |Δ|", log=True),
    # classification
    Metric("argmax_agreement", "argmax agreement", "fraction", higher_is_better=True, task=_C, short="argmax agree"),
    Metric("accuracy_drop", "accuracy drop (1 − argmax agreement)", "fraction", task=_C, derive=_one_minus("argmax_agreement"),
           short="acc. drop", aliases=("accuracy_loss", "argmax_disagreement")),
    # physics: ROC of the signal score (classification) or of the anomaly score (anomaly)
    Metric("auc", "AUC", "AUC", higher_is_better=True, task=_C + _A, short="AUC"),
    Metric("eff_at_bkg_1pct", "signal eff. at 1% bkg", "fraction", higher_is_better=True, task=_C + _A, short="ε_sig@1% bkg"),
    Metric("eff_at_bkg_10pct", "signal eff. at 10% bkg", "fraction", higher_is_better=True, task=_C + _A, short="ε_sig@10% bkg"),
    Metric("reference_auc", "reference AUC", "AUC", higher_is_better=True, task=_C + _A, derive=_reference_auc, short="ref. AUC"),
    Metric("auc_drop", "AUC drop", "AUC", task=_C + _A, derive=_auc_drop, short="AUC drop"),
    Metric("auc_loss", "AUC loss (1 − AUC)", "AUC", task=_C + _A, derive=_one_minus("auc"), short="1 − AUC"),
    # regression (and the reconstruction of an autoencoder)
    Metric("max_rel_error", "max relative error", "fraction", task=_R + _A, short="max rel. err", log=True),
    Metric("mean_rel_error", "mean relative error", "fraction", task=_R + _A, short="mean rel. err", log=True),
    Metric("resolution", "resolution (std of output − reference)", "output units", task=_R + _A, short="resolution", log=True),
    # fixed point: values the types wrapped or saturated on the evaluation data (fixed backend)
    Metric("overflows", "values overflowed (wrapped or saturated)", "values", short="overflows"),
    # anomaly detection
    Metric("score_rel_error", "anomaly score mean relative error", "fraction", task=_A, short="score rel. err", log=True),
]}

# Scores a loss is derived back from (the asv suite tracks losses, since asv takes lower as better).
_SCORE_OF_LOSS = {"accuracy_drop": "argmax_agreement", "auc_loss": "auc"}

_ALIASES = {alias: m.column for m in METRICS.values() for alias in m.aliases}


def column_of(name: str) -> str:
    """The current column of a metric name, old names (aliases) included; unknown names unchanged."""
    return _ALIASES.get(name, name)


def metric(name: str) -> Metric:
    """The Metric of a column or alias; KeyError naming the known ones otherwise."""
    column = column_of(name)
    if column not in METRICS:
        raise KeyError(f"unknown metric {name!r}; metrics are {list(METRICS)}")
    return METRICS[column]


def label(name: str) -> str:
    """Axis title of a metric (label and unit); the name itself for columns that are not metrics."""
    column = column_of(name)
    return METRICS[column].title if column in METRICS else name


def higher_is_better(name: str) -> bool:
    column = column_of(name)
    return METRICS[column].higher_is_better if column in METRICS else False


def derive(frame: "pd.DataFrame", run_keys: Sequence[str] = RUN_KEYS) -> "pd.DataFrame":
    """`frame` with old column names renamed and every derived metric filled where it is missing.

    A value already present is kept (asv tracks `auc_drop` itself, for example); a derived value
    is computed only from what the same row (or, for the reference AUC, the same run) holds.
    Scores tracked as losses come back too: `argmax_agreement` from `accuracy_drop`, `auc` from
    `auc_loss`."""
    frame = frame.copy()
    for alias, column in _ALIASES.items():
        if alias in frame.columns:
            values = _numeric(frame, alias)
            frame[column] = _numeric(frame, column).fillna(values) if column in frame.columns else values
            frame = frame.drop(columns=[alias])
    for loss, score in _SCORE_OF_LOSS.items():
        if loss in frame.columns:
            back = 1.0 - _numeric(frame, loss)
            frame[score] = _numeric(frame, score).fillna(back) if score in frame.columns else back
    for column, m in METRICS.items():
        if m.derive is None:
            continue
        computed = m.derive(frame, run_keys)
        frame[column] = _numeric(frame, column).fillna(computed) if column in frame.columns else computed
    return frame
