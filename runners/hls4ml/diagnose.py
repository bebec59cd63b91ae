"""The self-check `prepare` runs, and the layer trace that explains a failing one.

hls4ml converts some configurations without complaint into constant garbage (`granularity="name"`
on a softmax MLP). So `prepare` compares the emulation with the float model on a sample and, on
gross disagreement, recompiles with every layer traced and names the first layer that departs.

What counts as agreement is decided in one place, `_judge_output`, with the metrics of the model's
task (yukti.metrics.task_check: argmax agreement for a classifier, relative error for regression and
autoencoder outputs, whose argmax means nothing) and their limits (yukti.metrics.CHECK_LIMITS).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from yukti.runners.hls4ml.build import convert
from yukti.runners.hls4ml.frontend import Frontend, quiet
from yukti.errors import YuktiError
from yukti.model import Model

SELF_CHECK_SAMPLES = 2000
TRACE_SAMPLES = 200  # samples traced layer by layer when the check fails
# A traced layer "departs" when its mean absolute error exceeds this fraction of the float
# activations' mean magnitude (ap_fixed<16,6> on a healthy net stays near 1e-2).
DEPARTURE = 0.1


class EmulationMismatchError(YuktiError):
    """hls4ml's emulation disagrees grossly with the float model it was converted from."""


def self_check(run: Callable[[list[np.ndarray]], list[np.ndarray]], model: Model, frontend: Frontend,
               options: dict[str, Any]) -> dict[str, Any]:
    """Run the emulation (`run`) and the float model on a sample: the agreement found, or
    EmulationMismatchError naming the first departing layer when an output disagrees grossly."""
    from yukti.metrics import ANOMALY, infer_task, reconstruction_target

    x = _check_sample(model)
    emulated = run(x)
    reference = _float_reference(model, x)
    task = infer_task(model)
    result: dict[str, Any] = {"n_samples": int(len(x[0])), "task": task}
    problems = []
    for index, (out, ref) in enumerate(zip(emulated, reference)):
        # an autoencoder's score needs what it reconstructs: the input, or the part the model declares
        inputs = reconstruction_target(model, x[0]) if task == ANOMALY and len(x) == 1 else None
        measured, problem = _judge_output(out, ref, index, task, inputs)
        result.update({(f"{key}_{index}" if index else key): value for key, value in measured.items()})
        if problem:
            problems.append(problem)
    if problems:
        where = diagnose(model, frontend, options, [a[:TRACE_SAMPLES] for a in x])
        raise EmulationMismatchError(
            f"hls4ml emulation of {model.name!r} disagrees with the float model on {len(x[0])} samples: "
            f"{'; '.join(problems)}. {where} Options were {options}; try granularity='model', a wider "
            "precision, or layer_precision={layer: 'ap_fixed<W,I>'} for that layer")
    return result


def _judge_output(out: np.ndarray, ref: np.ndarray, index: int, task: str = "classification",
                  inputs: np.ndarray | None = None) -> tuple[dict[str, float], str | None]:
    """(what was measured on output `index` in `task`'s metrics, the problems found or None)."""
    from yukti.metrics import ANOMALY, task_check

    measured, problems = task_check(out, ref, task, inputs=inputs if task == ANOMALY else None)
    measured = {key: float(value) for key, value in measured.items() if isinstance(value, (int, float, np.floating))}
    return measured, (f"output {index}: {'; '.join(problems)}" if problems else None)


def _check_sample(model: Model) -> list[np.ndarray]:
    if model.data is not None and len(model.inputs) == 1 and len(model.data.X):
        x = np.ascontiguousarray(model.data.X[:SELF_CHECK_SAMPLES], dtype=np.float32)
        if x.shape[1:] == tuple(model.inputs[0].sample_shape):
            return [x]
    # no matching data: standard-normal inputs (the scale standardized features have)
    return model.example_inputs(batch_size=SELF_CHECK_SAMPLES, seed=0)


def _float_reference(model: Model, x: list[np.ndarray]) -> list[np.ndarray]:
    """The float network's outputs: the `reference` backend on the original model when there is one."""
    from yukti import registry

    source = "original" if model.torch_module is not None or model.keras_model is not None else "onnx"
    return registry.runner("reference", model, source=source).run_validated(x)


def diagnose(model: Model, frontend: Frontend, options: dict[str, Any], x: list[np.ndarray]) -> str:
    """Recompile with every layer traced and return a sentence naming the first layer whose
    fixed-point output departs from the float activation."""
    with tempfile.TemporaryDirectory(prefix="yukti-hls4ml-trace-") as tmp:
        try:
            hls_model = convert(model, frontend, options, Path(tmp) / "prj")
            for layer in hls_model.get_layers():
                layer.set_attr("trace", True)
            sample = np.ascontiguousarray(x[0], dtype=np.float32)
            with quiet():
                _, traces = hls_model.trace(sample)
            floats = frontend.float_activations(model, hls_model, sample)
        except Exception as exc:  # the diagnosis must not hide the mismatch it explains
            return f"(tracing the layers to find where it departs failed: {type(exc).__name__}: {exc})"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    errors: list[tuple[str, str, float]] = []
    for layer in hls_model.get_layers():
        if layer.name not in traces or layer.name not in floats:
            continue
        traced, ref = traces[layer.name].reshape(len(sample), -1), floats[layer.name]
        if ref.ndim > 2 and ref.reshape(len(ref), -1).shape == traced.shape and ref.shape[1:] != traces[layer.name].shape[1:]:
            ref = np.moveaxis(ref, 1, -1)  # channels-first float against channels-last firmware
        ref = ref.reshape(len(ref), -1)
        if ref.shape != traced.shape:
            continue
        error = float(np.abs(traced - ref).mean() / (np.abs(ref).mean() + 1e-3))
        errors.append((layer.name, layer.class_name, error))
    if not errors:
        return "No traced layer could be matched to a float activation to say where it departs."
    listing = ", ".join(f"{n} ({c}) {e:.3f}" for n, c, e in errors)
    for name, cls, error in errors:
        if error > DEPARTURE:
            return (f"The first layer that departs from the float activations is {name!r} ({cls}): mean relative "
                    f"error {error:.3f} > {DEPARTURE}. Per-layer relative error: {listing}.")
    name, cls, error = max(errors, key=lambda e: e[2])
    return (f"No layer departs by more than {DEPARTURE} on its own; the largest error is at {name!r} ({cls}) "
            f"{error:.3f}. Per-layer relative error: {listing}.")
