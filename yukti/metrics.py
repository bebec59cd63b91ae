"""Numbers the engine reports: latency statistics, fidelity to the reference in the terms of the
model's task, physics metrics. Names, units and directions of these numbers: yukti.vocabulary."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from yukti import vocabulary
from yukti.errors import InputError
from yukti.vocabulary import ANOMALY, CLASSIFICATION, REGRESSION, TASKS

if TYPE_CHECKING:  # pragma: no cover
    from yukti.model import Model


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


def fidelity(outputs: np.ndarray, reference: np.ndarray, task: str | None = None, *,
             inputs: np.ndarray | None = None) -> dict[str, float]:
    """How far a backend's outputs are from the reference's on the same inputs, in the terms of
    `task` (yukti.vocabulary.TASKS; None: classification, the historical default).

    Every task: `max_abs_diff`, `mean_abs_diff`. Classification: `argmax_agreement` (one sigmoid
    output: agreement of the decision at 0.5). Regression: `max_rel_error`, `mean_rel_error`,
    `resolution` (see `regression_errors`). Anomaly: the regression metrics of the reconstruction
    and `score_rel_error`, the mean relative error of the anomaly score (needs `inputs`)."""
    task = check_task(task or CLASSIFICATION)
    outputs = _rows(outputs)
    reference = _rows(reference)
    if len(outputs) == 0:
        raise ValueError("fidelity needs at least one sample")
    if outputs.shape != reference.shape:
        raise ValueError(f"output shape {outputs.shape} differs from the reference's {reference.shape}")
    diff = np.abs(outputs - reference)
    result = {"max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean())}
    if task == CLASSIFICATION:
        if outputs.shape[1] > 1:
            result["argmax_agreement"] = float((outputs.argmax(axis=1) == reference.argmax(axis=1)).mean())
        else:  # one sigmoid output: agreement of the decision at 0.5
            result["argmax_agreement"] = float(((outputs[:, 0] > 0.5) == (reference[:, 0] > 0.5)).mean())
        return result
    result.update(regression_errors(outputs, reference))
    if task == ANOMALY:
        if inputs is None:
            raise ValueError("anomaly fidelity needs the inputs: the score is the reconstruction error")
        ours, theirs = anomaly_score(outputs, inputs), anomaly_score(reference, inputs)
        result["score_rel_error"] = float(_relative(np.abs(ours - theirs), np.abs(theirs)).mean())
    return result


def _rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values.reshape(len(values), -1)


def _relative(error: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """error / scale, with scales below REL_SCALE_FLOOR of the typical (mean) scale raised to that
    floor: a reference that is zero must not make a tiny error infinite."""
    floor = max(float(scale.mean()) * REL_SCALE_FLOOR, np.finfo(np.float64).tiny)
    return error / np.maximum(scale, floor)


# Scales (norms of a reference sample, anomaly scores) below this fraction of their mean count as the floor.
REL_SCALE_FLOOR = 1e-3


def regression_errors(outputs: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Errors of outputs against the reference, for outputs that are numbers rather than classes.

    Relative error of a sample: ||y − r|| / ||r|| (Euclidean norms over the sample's outputs; one
    output gives |y − r| / |r|), with reference norms below REL_SCALE_FLOOR × their mean raised to
    that floor. `max_rel_error` and `mean_rel_error` are over samples. `resolution` is the standard
    deviation of the residual y − r over every output value, in output units: the spread of the
    backend's error, a constant bias excluded."""
    outputs, reference = _rows(outputs), _rows(reference)
    residual = outputs - reference
    relative = _relative(np.linalg.norm(residual, axis=1), np.linalg.norm(reference, axis=1))
    return {"max_rel_error": float(relative.max()), "mean_rel_error": float(relative.mean()),
            "resolution": float(residual.std())}


def anomaly_score(reconstruction: np.ndarray, inputs: np.ndarray) -> np.ndarray:
    """Reconstruction error per sample: the mean squared difference between an autoencoder's
    output and its input (higher: more anomalous)."""
    reconstruction, inputs = _rows(reconstruction), _rows(inputs)
    if reconstruction.shape != inputs.shape:
        raise ValueError(f"an anomaly score needs outputs shaped like the inputs; outputs {reconstruction.shape[1:]} "
                         f"per sample, inputs {inputs.shape[1:]}")
    return ((reconstruction - inputs) ** 2).mean(axis=1)


def reconstruction_target(model: "Model", inputs: np.ndarray) -> np.ndarray:
    """What an autoencoder's output is compared with: the flattened input, or the slice of it the
    model declares it reconstructs (`Model.reconstructs`)."""
    span = getattr(model, "reconstructs", None)
    if span is None:
        return inputs
    start, stop = span
    flat = _rows(inputs)
    if not 0 <= start < stop <= flat.shape[1]:
        raise ValueError(f"model reconstructs input features [{start}, {stop}) but a sample has {flat.shape[1]}")
    return flat[:, start:stop]


def check_task(task: str) -> str:
    if task not in TASKS:
        raise InputError(f"task must be one of {list(TASKS)}; got {task!r}")
    return task


_CLASSIFIER_HEADS = {"Softmax", "LogSoftmax"}


def infer_task(model: "Model") -> str:
    """The model's task: declared (`model.task`), else inferred, first rule that applies:
    a Softmax/LogSoftmax head -> classification; one output shaped like the one input ->
    anomaly (an autoencoder); a Sigmoid head -> classification; evaluation data whose class
    count matches the output width -> classification; anything else -> regression."""
    declared = getattr(model, "task", None)
    if declared is not None:
        return check_task(declared)
    head = _head_op(model)
    if head in _CLASSIFIER_HEADS:
        return CLASSIFICATION
    if getattr(model, "reconstructs", None) is not None:
        return ANOMALY
    ins, outs = model.inputs, model.outputs
    if len(ins) == 1 and len(outs) == 1 and ins[0].sample_shape == outs[0].sample_shape:
        return ANOMALY
    if head == "Sigmoid":
        return CLASSIFICATION
    data = model.data
    if data is not None and data.y is not None and len(outs) == 1:
        width = math.prod(d or 0 for d in outs[0].sample_shape)
        if width == len(data.class_names) or (width == 1 and len(data.class_names) == 2):
            return CLASSIFICATION
    return REGRESSION


def _head_op(model: "Model") -> str | None:
    """The operator that produces the model's first output (ONNX form; else the original's last layer)."""
    if model.has_onnx:
        graph = model.onnx.graph
        first = graph.output[0].name if graph.output else None
        producer = next((n for n in graph.node if first in n.output), None)
        return producer.op_type if producer is not None else None
    if model.keras_model is not None:
        activation = getattr(getattr(model.keras_model.layers[-1], "activation", None), "__name__", "")
        return {"softmax": "Softmax", "sigmoid": "Sigmoid", "log_softmax": "LogSoftmax"}.get(activation)
    if model.torch_module is not None:
        modules = list(model.torch_module.modules())
        return {"Softmax": "Softmax", "LogSoftmax": "LogSoftmax", "Sigmoid": "Sigmoid"}.get(type(modules[-1]).__name__)
    return None


# Default limits of `task_check`, per task: the least an emulation (hls4ml's fixed point) or any
# approximate backend must achieve before it counts as computing the same function. Gross-failure
# limits, not quality targets: a sane fixed-point approximation is far inside them. A relative error
# of half the output's norm is garbage (a wrapped or saturated layer gives 1 and more), while a
# healthy ap_fixed<16,6> emulation of an untrained 77-32-32-32-76 net, whose outputs are small, was
# measured at 0.09: a limit of 0.1 would refuse working firmware. The anomaly score (a mean squared
# error, near 0 for a good reconstruction) is not checked: its relative error is large whenever
# the float score is tiny.
CHECK_LIMITS: dict[str, dict[str, float]] = {
    CLASSIFICATION: {"argmax_agreement": 0.9},
    REGRESSION: {"mean_rel_error": 0.5},
    ANOMALY: {"mean_rel_error": 0.5},
}


def task_check(outputs: np.ndarray, reference: np.ndarray, task: str, *, inputs: np.ndarray | None = None,
               limits: dict[str, float] | None = None) -> tuple[dict[str, float], list[str]]:
    """Fidelity of `outputs` to `reference` in `task`'s metrics, and the problems found: an output
    that is the same for every sample while the reference's varies, and each metric past its
    limit (CHECK_LIMITS[task], overridden by `limits`; the direction comes from the vocabulary).
    No problems: an empty list."""
    task = check_task(task)
    result = fidelity(outputs, reference, task, inputs=inputs)
    flat_out, flat_ref = _rows(outputs), _rows(reference)
    problems = []
    if (flat_out == flat_out[0]).all() and not (flat_ref == flat_ref[0]).all():
        problems.append(f"the output is the same for every sample ({np.round(flat_out[0], 4).tolist()[:8]})")
    for column, limit in {**CHECK_LIMITS[task], **(limits or {})}.items():
        spec = vocabulary.metric(column)
        value = result.get(spec.column, float("nan"))
        ok = value >= limit if spec.higher_is_better else value <= limit
        if not ok:
            problems.append(f"{spec.label} {value:.3g} {'<' if spec.higher_is_better else '>'} {limit:g}")
    return result, problems


def signal_score(outputs: np.ndarray, signal_class: int) -> np.ndarray:
    outputs = np.asarray(outputs, dtype=np.float64).reshape(len(outputs), -1)
    if outputs.shape[1] == 1:  # binary classifier with one output = P(class 1)
        return outputs[:, 0] if signal_class == 1 else -outputs[:, 0]
    return outputs[:, signal_class]


def task_score(outputs: np.ndarray, task: str, signal_class: int, inputs: np.ndarray | None = None) -> np.ndarray:
    """Per-sample score whose ROC the physics metrics describe: the signal class's output
    (classification) or the reconstruction error (anomaly: signal = anomalous)."""
    if check_task(task) == ANOMALY:
        if inputs is None:
            raise ValueError("an anomaly score needs the inputs: it is the reconstruction error")
        return anomaly_score(outputs, inputs)
    return signal_score(outputs, signal_class)


def physics(outputs: np.ndarray, labels: np.ndarray, signal_class: int, *, task: str | None = None,
            inputs: np.ndarray | None = None) -> dict[str, float]:
    """ROC AUC of the task's score for signal (labels == signal_class) against the rest, and signal
    efficiency at 1% and 10% background efficiency (for anomaly detection: at a 1% and 10%
    false-positive rate). NaN when the labels hold one class only; {} for regression."""
    task = check_task(task or CLASSIFICATION)
    if task == REGRESSION:
        return {}
    return roc_summary(task_score(outputs, task, signal_class, inputs), np.asarray(labels) == signal_class)


def roc_summary(score: np.ndarray, is_signal: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score, roc_curve

    is_signal = np.asarray(is_signal, dtype=bool)
    if is_signal.all() or not is_signal.any():
        return {"auc": float("nan"), "eff_at_bkg_1pct": float("nan"), "eff_at_bkg_10pct": float("nan")}
    fpr, tpr, _ = roc_curve(is_signal, score)
    return {
        "auc": float(roc_auc_score(is_signal, score)),
        "eff_at_bkg_1pct": float(np.interp(0.01, fpr, tpr)),
        "eff_at_bkg_10pct": float(np.interp(0.10, fpr, tpr)),
    }


def efficiency_curve(score: np.ndarray, is_signal: np.ndarray, n_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Signal efficiency against background efficiency (the ROC curve in trigger terms), at
    `n_points` log-spaced background efficiencies (plus 1% and 10%), so a curve stays small at any
    sample count: (background efficiencies, signal efficiencies)."""
    from sklearn.metrics import roc_curve

    is_signal = np.asarray(is_signal, dtype=bool)
    bkg, sig, _ = roc_curve(is_signal, score)
    n_bkg = max(int((~is_signal).sum()), 1)
    grid = np.unique(np.concatenate([np.geomspace(1.0 / n_bkg, 1.0, n_points), [0.01, 0.1]]))
    return grid, np.interp(grid, bkg, sig)
