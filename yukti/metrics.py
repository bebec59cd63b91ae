"""Numbers the engine reports: latency statistics, fidelity to the reference, physics metrics."""

from __future__ import annotations

import numpy as np


def latency_stats(times_ns: np.ndarray, batch_size: int) -> dict[str, float]:
    """Percentiles of per-call wall times, in microseconds, and throughput in samples/s."""
    us = np.asarray(times_ns, dtype=np.float64) / 1e3
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    mean = float(us.mean())
    return {
        "latency_p50_us": float(p50),
        "latency_p90_us": float(p90),
        "latency_p99_us": float(p99),
        "latency_mean_us": mean,
        "latency_std_us": float(us.std(ddof=1)) if len(us) > 1 else 0.0,
        "throughput_per_s": batch_size / (mean * 1e-6),
        "n_calls": int(len(us)),
    }


def fidelity(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """How far a backend's outputs are from the reference's on the same inputs."""
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if len(outputs) == 0:
        raise ValueError("fidelity needs at least one sample")
    if outputs.shape != reference.shape:
        raise ValueError(f"output shape {outputs.shape} differs from the reference's {reference.shape}")
    diff = np.abs(outputs - reference)
    result = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if outputs.shape[1] > 1:
        result["argmax_agreement"] = float((outputs.argmax(axis=1) == reference.argmax(axis=1)).mean())
    else:  # one sigmoid output: agreement of the decision at 0.5
        result["argmax_agreement"] = float(((outputs[:, 0] > 0.5) == (reference[:, 0] > 0.5)).mean())
    return result


def signal_score(outputs: np.ndarray, signal_class: int) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if outputs.shape[1] == 1:  # binary classifier with one output = P(class 1)
        return outputs[:, 0] if signal_class == 1 else -outputs[:, 0]
    return outputs[:, signal_class]


def physics(outputs: np.ndarray, labels: np.ndarray, signal_class: int) -> dict[str, float]:
    """One-vs-rest ROC AUC and signal efficiency at 1% and 10% background efficiency."""
    from sklearn.metrics import roc_auc_score, roc_curve

    is_signal = np.asarray(labels) == signal_class
    if is_signal.all() or not is_signal.any():
        return {"auc": float("nan"), "eff_at_bkg_1pct": float("nan"), "eff_at_bkg_10pct": float("nan")}
    score = signal_score(outputs, signal_class)
    fpr, tpr, _ = roc_curve(is_signal, score)
    return {
        "auc": float(roc_auc_score(is_signal, score)),
        "eff_at_bkg_1pct": float(np.interp(0.01, fpr, tpr)),
        "eff_at_bkg_10pct": float(np.interp(0.10, fpr, tpr)),
    }
