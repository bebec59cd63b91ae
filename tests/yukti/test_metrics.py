"""yukti.metrics: latency statistics, fidelity to the reference per task, task checks and the physics metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from yukti.errors import InputError
from yukti.metrics import (
    CHECK_LIMITS,
    REL_SCALE_FLOOR,
    anomaly_score,
    fidelity,
    latency_stats,
    physics,
    regression_errors,
    signal_score,
    task_check,
)

# -- latency_stats ---------------------------------------------------------------------------------


def test_latency_stats_on_known_times() -> None:
    rng = np.random.default_rng(0)
    times_ns = rng.integers(10_000, 90_000, 257)  # 10-90 us per call
    batch = 32
    stats = latency_stats(times_ns, batch)
    us = times_ns / 1e3
    assert stats["latency_p50_us"] == pytest.approx(np.percentile(us, 50))
    assert stats["latency_p90_us"] == pytest.approx(np.percentile(us, 90))
    assert stats["latency_p99_us"] == pytest.approx(np.percentile(us, 99))
    assert stats["latency_mean_us"] == pytest.approx(us.mean())
    assert stats["latency_std_us"] == pytest.approx(us.std(ddof=1))
    assert stats["n_calls"] == len(times_ns)
    # throughput: samples per second = batch / mean seconds per call
    assert stats["throughput_per_s"] == pytest.approx(batch / (us.mean() * 1e-6))
    assert stats["latency_p50_us"] <= stats["latency_p90_us"] <= stats["latency_p99_us"]


def test_latency_stats_simple_values() -> None:
    # 1, 2, 3, 4 ms: median 2.5 ms, mean 2.5 ms -> 4 samples / 2.5 ms = 1600 samples/s
    stats = latency_stats(np.array([1e6, 2e6, 3e6, 4e6]), batch_size=4)
    assert stats["latency_p50_us"] == pytest.approx(2500.0)
    assert stats["latency_mean_us"] == pytest.approx(2500.0)
    assert stats["throughput_per_s"] == pytest.approx(4 / 2.5e-3)
    assert all(isinstance(v, (int, float)) for v in stats.values())


def test_latency_stats_single_call_has_zero_std() -> None:
    stats = latency_stats(np.array([5_000]), batch_size=1)
    assert stats["latency_std_us"] == 0.0
    assert stats["latency_p50_us"] == stats["latency_p99_us"] == pytest.approx(5.0)
    assert stats["throughput_per_s"] == pytest.approx(1 / 5e-6)


# -- fidelity ------------------------------------------------------------------------------------------


def test_fidelity_multiclass() -> None:
    reference = np.array([
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.3, 0.4],
        [0.5, 0.4, 0.1],
    ])
    outputs = reference.copy()
    outputs[2] = [0.45, 0.3, 0.25]  # argmax flips from 2 to 0; largest |diff| is 0.15
    outputs[3, 1] += 0.01  # small change, argmax kept
    result = fidelity(outputs, reference)
    diff = np.abs(outputs - reference)
    assert result["max_abs_diff"] == pytest.approx(0.15)
    assert result["max_abs_diff"] == pytest.approx(diff.max())
    assert result["mean_abs_diff"] == pytest.approx(diff.mean())
    assert result["argmax_agreement"] == pytest.approx(3 / 4)


def test_fidelity_identical_outputs() -> None:
    reference = np.random.default_rng(1).normal(size=(10, 5)).astype(np.float32)
    result = fidelity(reference.copy(), reference)
    assert result == {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "argmax_agreement": 1.0}


def test_fidelity_flattens_trailing_axes() -> None:
    reference = np.zeros((3, 2, 2))
    outputs = reference.copy()
    outputs[1, 1, 0] = 0.5
    result = fidelity(outputs, reference)
    assert result["max_abs_diff"] == pytest.approx(0.5)
    assert result["mean_abs_diff"] == pytest.approx(0.5 / reference.size)


def test_fidelity_single_sigmoid_output() -> None:
    reference = np.array([[0.9], [0.2], [0.55], [0.45], [0.1]])
    outputs = np.array([[0.8], [0.3], [0.45], [0.45], [0.6]])  # rows 2 and 4 cross the 0.5 decision
    result = fidelity(outputs, reference)
    assert result["max_abs_diff"] == pytest.approx(0.5)
    assert result["mean_abs_diff"] == pytest.approx(np.abs(outputs - reference).mean())
    assert result["argmax_agreement"] == pytest.approx(3 / 5)
    # a 1-D vector of scores is the same single output
    flat = fidelity(outputs[:, 0], reference[:, 0])
    assert flat["argmax_agreement"] == pytest.approx(3 / 5)


def test_fidelity_shape_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="shape"):
        fidelity(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError):
        fidelity(np.zeros((5, 2)), np.zeros((4, 2)))


# -- physics -------------------------------------------------------------------------------------------


def test_physics_perfect_separation() -> None:
    labels = np.array([0, 1, 2, 1, 0, 2, 1, 0])
    signal = 1
    scores = np.zeros((len(labels), 3))
    scores[:, signal] = np.where(labels == signal, 0.9, 0.1) + np.linspace(0, 0.05, len(labels))
    result = physics(scores, labels, signal)
    assert result["auc"] == pytest.approx(1.0)
    assert result["eff_at_bkg_1pct"] == pytest.approx(1.0)
    assert result["eff_at_bkg_10pct"] == pytest.approx(1.0)


def test_physics_reversed_scores() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1])
    scores = np.zeros((6, 2))
    scores[:, 0] = [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]  # the signal class's score is highest on background
    result = physics(scores, labels, signal_class=0)
    assert result["auc"] == pytest.approx(0.0)
    assert result["eff_at_bkg_1pct"] == pytest.approx(0.0)
    assert result["eff_at_bkg_10pct"] == pytest.approx(0.0)


def _hand_efficiency(sig: np.ndarray, bkg: np.ndarray, max_bkg_eff: float) -> float:
    """Largest fraction of signal kept by a cut `score >= t` that keeps at most `max_bkg_eff` of background."""
    best = 0.0
    for t in np.concatenate([sig, bkg, [np.inf]]):
        if (bkg >= t).mean() <= max_bkg_eff:
            best = max(best, float((sig >= t).mean()))
    return best


def test_physics_efficiency_at_10pct_background_by_hand() -> None:
    # Ten background scores 0.05, 0.15, ..., 0.95: a 10% background efficiency keeps exactly one of
    # them (0.95), so the cut sits just above 0.85. Signals above 0.85: 0.98, 0.96, 0.90 -> 3 of 6.
    # At 1% no background may pass: signals above 0.95 are 0.98 and 0.96 -> 2 of 6.
    bkg = np.round(np.arange(10) * 0.1 + 0.05, 2)
    sig = np.array([0.98, 0.96, 0.90, 0.80, 0.60, 0.30])
    labels = np.r_[np.zeros(len(bkg)), np.ones(len(sig))].astype(int)
    p_signal = np.r_[bkg, sig]
    outputs = np.stack([1 - p_signal, p_signal], axis=1)  # two-class softmax-like outputs
    result = physics(outputs, labels, signal_class=1)
    assert result["eff_at_bkg_10pct"] == pytest.approx(3 / 6)
    assert result["eff_at_bkg_1pct"] == pytest.approx(2 / 6)
    assert result["eff_at_bkg_10pct"] == pytest.approx(_hand_efficiency(sig, bkg, 0.10))
    assert result["eff_at_bkg_1pct"] == pytest.approx(_hand_efficiency(sig, bkg, 0.01))
    # AUC = P(score_signal > score_background), counted over all pairs (no ties here)
    pairs = (sig[:, None] > bkg[None, :]).mean()
    assert result["auc"] == pytest.approx(pairs)


def test_physics_efficiency_on_random_scores_matches_hand_count() -> None:
    rng = np.random.default_rng(2)
    bkg = rng.normal(0.0, 1.0, 200)  # 10% of 200 = 20 background events may pass
    sig = rng.normal(1.5, 1.0, 150)
    labels = np.r_[np.full(len(bkg), 2), np.full(len(sig), 0)]
    outputs = np.zeros((len(labels), 3))
    outputs[:, 0] = np.r_[bkg, sig]
    result = physics(outputs, labels, signal_class=0)
    assert result["eff_at_bkg_10pct"] == pytest.approx(_hand_efficiency(sig, bkg, 0.10))
    assert result["auc"] == pytest.approx((sig[:, None] > bkg[None, :]).mean())
    assert 0.0 <= result["eff_at_bkg_1pct"] <= result["eff_at_bkg_10pct"] <= 1.0


def test_physics_single_output_binary() -> None:
    # one output = P(class 1); signal class 0 uses the negated score
    p1 = np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    labels = np.array([1, 1, 1, 0, 0])
    assert physics(p1[:, None], labels, signal_class=1)["auc"] == pytest.approx(1.0)
    assert physics(p1[:, None], labels, signal_class=0)["auc"] == pytest.approx(1.0)
    np.testing.assert_array_equal(signal_score(p1[:, None], 0), -p1)
    np.testing.assert_array_equal(signal_score(p1[:, None], 1), p1)


@pytest.mark.parametrize("labels", [np.zeros(6, int), np.ones(6, int)])
def test_physics_one_class_only_is_nan(labels: np.ndarray) -> None:
    outputs = np.random.default_rng(3).uniform(size=(6, 2))
    result = physics(outputs, labels, signal_class=1)
    assert set(result) == {"auc", "eff_at_bkg_1pct", "eff_at_bkg_10pct"}
    assert all(math.isnan(v) for v in result.values())


# -- tasks: regression and anomaly metrics -------------------------------------------------------------


def test_regression_errors_by_hand() -> None:
    reference = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])  # sample norms 5, 1, 2
    outputs = reference + np.array([[0.3, 0.4], [0.0, 0.1], [0.0, 0.0]])  # residual norms 0.5, 0.1, 0
    result = fidelity(outputs, reference, "regression")
    assert result["max_rel_error"] == pytest.approx(0.1)  # 0.5 / 5 and 0.1 / 1
    assert result["mean_rel_error"] == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    residual = (outputs - reference).ravel()
    assert result["resolution"] == pytest.approx(residual.std())
    assert result["max_abs_diff"] == pytest.approx(0.4)
    assert "argmax_agreement" not in result  # meaningless for numbers that are not classes


def test_relative_error_of_a_zero_reference_is_finite() -> None:
    reference = np.array([[0.0], [1.0], [2.0]])
    outputs = reference + 1e-3
    errors = regression_errors(outputs, reference)
    floor = REL_SCALE_FLOOR * np.abs(reference).mean()
    assert errors["max_rel_error"] == pytest.approx(1e-3 / floor)
    assert math.isfinite(errors["max_rel_error"])


def test_resolution_ignores_a_constant_bias() -> None:
    reference = np.random.default_rng(4).normal(size=(50, 3))
    assert regression_errors(reference + 0.5, reference)["resolution"] == pytest.approx(0.0, abs=1e-12)


def test_anomaly_score_and_its_fidelity() -> None:
    rng = np.random.default_rng(5)
    inputs = rng.normal(size=(40, 6))
    reference = inputs * 0.9  # a reconstruction
    score = anomaly_score(reference, inputs)
    np.testing.assert_allclose(score, ((0.1 * inputs) ** 2).mean(axis=1))
    result = fidelity(reference * 1.01, reference, "anomaly", inputs=inputs)
    assert result["mean_rel_error"] == pytest.approx(0.01)
    ours = anomaly_score(reference * 1.01, inputs)
    assert result["score_rel_error"] == pytest.approx(np.mean(np.abs(ours - score) / score))
    with pytest.raises(ValueError, match="inputs"):
        fidelity(reference, reference, "anomaly")
    with pytest.raises(ValueError, match="shaped like the inputs"):
        anomaly_score(reference[:, :5], inputs)


def test_physics_of_an_anomaly_score_uses_the_reconstruction_error() -> None:
    inputs = np.r_[np.zeros((20, 4)), np.ones((10, 4))]
    reconstruction = np.zeros_like(inputs)  # reconstructs "normal" (zeros) only: the ones are anomalous
    labels = np.r_[np.zeros(20, int), np.ones(10, int)]
    result = physics(reconstruction, labels, signal_class=1, task="anomaly", inputs=inputs)
    assert result["auc"] == pytest.approx(1.0) and result["eff_at_bkg_1pct"] == pytest.approx(1.0)
    assert physics(reconstruction, labels, 1, task="regression") == {}


def test_unknown_task_is_refused() -> None:
    with pytest.raises(InputError, match="classification"):
        fidelity(np.zeros((2, 2)), np.zeros((2, 2)), "segmentation")


def test_task_check_limits_and_constant_output() -> None:
    rng = np.random.default_rng(6)
    reference = rng.uniform(1.0, 2.0, size=(100, 4))
    metrics, problems = task_check(reference * 1.02, reference, "regression")
    assert problems == [] and metrics["mean_rel_error"] == pytest.approx(0.02)
    _, problems = task_check(reference * 2.0, reference, "regression")
    assert problems == ["mean relative error 1 > 0.5"]
    _, problems = task_check(reference * 1.2, reference, "regression", limits={"mean_rel_error": 0.1})
    assert problems == ["mean relative error 0.2 > 0.1"]
    constant = np.tile(reference[0], (100, 1))
    _, problems = task_check(constant, reference, "regression")
    assert any("same for every sample" in p for p in problems)
    # classification: the historical argmax agreement limit, its direction from the vocabulary
    flipped = reference.copy()
    flipped[:20] = flipped[:20, ::-1]
    _, problems = task_check(flipped, reference, "classification", limits={"argmax_agreement": 0.95})
    assert len(problems) == 1 and problems[0].startswith("argmax agreement") and "< 0.95" in problems[0]
    assert CHECK_LIMITS["classification"] == {"argmax_agreement": 0.9}
