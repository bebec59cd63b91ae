"""Task kinds end to end: inference from the model, the engine's metrics per task (a tiny dense
autoencoder and a regression net built here in torch), the chooser's error constraints, and the
reference as a cached, untimed baseline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

import yukti
from yukti import metrics, registry
from yukti.engine import reference_outputs

QUICK = yukti.TimingPolicy(time_budget_s=0.02, min_calls=5, warmup_calls=2, warmup_s=0.0)


def _dense(sizes: list[int], head: object = None, seed: int = 0) -> yukti.Model:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    if head is not None:
        layers.append(head)
    return yukti.load(nn.Sequential(*layers).eval(), torch.zeros(1, sizes[0]), name=f"dense_{'_'.join(map(str, sizes))}")


@pytest.fixture(scope="module")
def autoencoder() -> yukti.Model:
    return _dense([12, 6, 3, 6, 12])


@pytest.fixture(scope="module")
def regressor() -> yukti.Model:
    return _dense([10, 8, 9])  # like the 77-32-32-32-76 autoencoder: output not shaped like the input


def test_the_task_is_inferred_from_the_model(jet_dnn, autoencoder, regressor) -> None:
    from torch import nn

    assert metrics.infer_task(jet_dnn) == "classification"  # softmax head
    assert metrics.infer_task(autoencoder) == "anomaly"  # output shaped like the input
    assert metrics.infer_task(regressor) == "regression"
    assert metrics.infer_task(_dense([10, 4, 1], nn.Sigmoid())) == "classification"
    assert metrics.infer_task(_dense([10, 4, 10], nn.Sigmoid())) == "anomaly"  # a [0, 1] autoencoder
    logits = _dense([16, 8, 5])  # no softmax, but labelled data with five classes
    logits.data = jet_dnn.data
    assert metrics.infer_task(logits) == "classification"


def test_a_declared_task_wins_and_is_checked(regressor) -> None:
    model = _dense([10, 8, 9])
    model.task = "anomaly"
    assert metrics.infer_task(model) == "anomaly"
    model.task = "clustering"
    with pytest.raises(yukti.InputError, match="regression"):
        metrics.infer_task(model)


def test_engine_measures_an_autoencoder_with_anomaly_metrics(autoencoder) -> None:
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 1, (300, 12)), rng.normal(0, 4, (100, 12))].astype(np.float32)  # the wide ones are anomalous
    y = np.r_[np.zeros(300), np.ones(100)].astype(int)
    data = yukti.Dataset("toy_anomalies", X, y, tuple(f"f{i}" for i in range(12)), ("normal", "anomalous"), signal_class=1)
    frame = yukti.benchmark(autoencoder, backends=["onnxruntime"], batch_sizes=(1,), data=data, policy=QUICK, store=False)
    row = frame.iloc[0]
    assert row.status == "ok", row.error
    assert row.task == "anomaly"
    assert pd.isna(row.argmax_agreement) and pd.isna(row.accuracy_drop)  # no classes to agree on
    assert 0 <= row.max_rel_error < 1e-4 and 0 <= row.score_rel_error < 1e-4 and row.resolution < 1e-5
    # the reconstruction error separates the wide samples: AUC of the score, efficiency at 1% false positives
    assert 0.8 < row.auc <= 1.0 and 0.0 <= row.eff_at_bkg_1pct <= row.eff_at_bkg_10pct <= 1.0
    assert row.reference_auc == pytest.approx(row.auc, abs=1e-6) and abs(row.auc_drop) < 1e-6


def test_engine_measures_a_regression_net_with_errors(regressor) -> None:
    frame = yukti.benchmark(regressor, backends=["onnxruntime"], batch_sizes=(1,), policy=QUICK, store=False)
    row = frame.iloc[0]
    assert row.status == "ok" and row.task == "regression"
    assert pd.isna(row.argmax_agreement) and pd.isna(row.auc)
    assert 0 <= row.max_rel_error < 1e-4 and row.mean_rel_error <= row.max_rel_error
    # the same net measured as a classifier, on request: the metrics follow the task asked for
    forced = yukti.benchmark(regressor, backends=["onnxruntime"], batch_sizes=(1,), policy=QUICK, store=False,
                             task="classification").iloc[0]
    assert forced.task == "classification" and forced.argmax_agreement == 1.0 and pd.isna(forced.max_rel_error)
    with pytest.raises(yukti.InputError, match="anomaly"):
        yukti.benchmark(regressor, backends=["onnxruntime"], batch_sizes=(1,), policy=QUICK, store=False, task="anomaly")


def test_choose_bounds_the_relative_error_of_a_regression(tmp_path, regressor) -> None:
    store = str(tmp_path / "store")
    choice = yukti.choose(regressor, backends=["onnxruntime"], max_rel_error=1e-3, store=store, policy=QUICK)
    assert choice.winner is not None and choice.winner["max_rel_error"] < 1e-3
    strict = yukti.choose(regressor, backends=["onnxruntime"], max_rel_error=0.0, max_abs_error=0.0, store=store,
                          measure="never")
    check = {c.name: c for c in strict.get("onnxruntime").checks}
    # float rounding differs from the reference's: a zero limit is missed unless the outputs are bit-identical
    assert check["max_rel_error"].ok == (check["max_rel_error"].value == 0.0)
    assert check["max_rel_error"].label == "max relative error"


def test_the_reference_is_an_untimed_baseline_unless_asked(jet_dnn) -> None:
    frame = yukti.benchmark(jet_dnn, backends=["reference", "onnxruntime"], batch_sizes=(1, 4), policy=QUICK,
                            max_eval_samples=300, store=False, time_reference=False)
    ref = frame[frame.backend == "reference"]
    assert list(ref.batch_size) == [1, 4] and (ref.status == "ok").all()
    assert ref.latency_p50_us.isna().all() and ref.n_calls.isna().all()  # not timed
    assert (ref.max_abs_diff == 0).all() and (ref.argmax_agreement == 1).all()
    ort = frame[frame.backend == "onnxruntime"]
    assert (ort.latency_p50_us > 0).all()
    # every row carries the reference's AUC on the same samples
    assert frame.reference_auc.nunique() == 1 and frame.reference_auc.iloc[0] == pytest.approx(ref.auc.iloc[0])
    assert (frame.auc_drop == frame.reference_auc - frame.auc).all()


def test_reference_outputs_are_computed_once_and_cached(jet_dnn, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("YUKTI_CACHE_DIR", str(tmp_path / "cache"))
    arrays = jet_dnn.validate_inputs(jet_dnn.data.X[:200])
    first = reference_outputs(jet_dnn, arrays)
    expected = yukti.runner("reference", jet_dnn)(arrays[0])
    np.testing.assert_array_equal(first, expected)

    def no_second_evaluation(*args, **kwargs):
        raise AssertionError("the reference ran again although its outputs are cached")

    monkeypatch.setattr(registry, "runner", no_second_evaluation)
    np.testing.assert_array_equal(reference_outputs(jet_dnn, arrays), first)
    # other inputs are another entry: computed, not confused with the cached ones
    with pytest.raises(AssertionError, match="ran again"):
        reference_outputs(jet_dnn, jet_dnn.validate_inputs(jet_dnn.data.X[200:300]))
    entries = yukti.ArtifactCache().entries()
    assert [e.kind for e in entries] == ["reference"]
    assert not math.isnan(first.sum())
