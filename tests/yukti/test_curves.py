"""yukti.curves: the fidelity curves a run stores next to its results (what the dashboard draws)."""

from __future__ import annotations

from pathlib import Path

import io
import os

import numpy as np
import pandas as pd
import pytest

from yukti import curves, results


def _classifier_outputs(n: int = 3000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[labels]
    outputs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return outputs.astype(np.float32), labels


def test_a_classifier_gets_an_efficiency_curve_and_a_difference_histogram() -> None:
    reference, labels = _classifier_outputs()
    other = reference.copy()
    other[:100, 0] += 1e-6  # 100 values differ by 1e-6 (float32: about that), the rest are equal
    other[:3, 1] += 1e6  # beyond the last edge: counted in the outermost bin, not dropped
    frame = curves.of_backend("cpp", {"threads": 1}, "classification", other, reference, labels=labels, signal_class=1)
    assert list(frame.columns) == curves.COLUMNS
    assert set(frame["curve"]) == {curves.EFFICIENCY, curves.ABS_DIFF}
    assert set(frame["options"]) == {'{"threads": 1}'}  # as the results store keeps options
    eff = frame[frame["curve"] == curves.EFFICIENCY]
    assert eff["x"].is_monotonic_increasing and eff["y"].is_monotonic_increasing
    assert 0.01 in eff["x"].to_numpy() and 0.1 in eff["x"].to_numpy()  # the stored summary points are on the curve
    hist = frame[frame["curve"] == curves.ABS_DIFF]
    assert hist["y"].sum() == 103 and (hist["n_values"] == reference.size).all() and (hist["n_equal"] == reference.size - 103).all()
    assert hist.loc[hist["y"].idxmax(), "x"] == pytest.approx(-6, abs=0.5)
    assert hist["y"].iloc[-1] == 3


def test_a_perfect_score_has_full_efficiency_and_a_random_one_passes_the_background_rate() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random(4000) < 0.3).astype(int)
    perfect = curves.of_backend("reference", {}, "classification", labels[:, None].astype(float), labels[:, None],
                                labels=labels, signal_class=1)
    assert (perfect["curve"] == curves.EFFICIENCY).all()  # the reference has no difference to itself
    assert perfect["y"].min() == pytest.approx(1.0)
    noise = rng.random((4000, 1))
    random = curves.of_backend("reference", {}, "classification", noise, noise, labels=labels, signal_class=1)
    at_10pct = random.loc[np.isclose(random["x"], 0.1), "y"].item()
    assert 0.05 < at_10pct < 0.15


def test_regression_has_differences_only_and_unlabelled_data_no_efficiency() -> None:
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(500, 4))
    other = reference + rng.normal(scale=1e-3, size=reference.shape)
    regression = curves.of_backend("onnxruntime", {}, "regression", other, reference, labels=rng.integers(0, 2, 500), signal_class=1)
    assert set(regression["curve"]) == {curves.ABS_DIFF} and regression["y"].sum() == reference.size
    classifier, _ = _classifier_outputs(500)
    unlabelled = curves.of_backend("torch", {}, "classification", classifier, classifier)
    assert set(unlabelled["curve"]) == {curves.ABS_DIFF} and unlabelled["y"].sum() == 0
    assert curves.of_backend("reference", {}, "regression", reference, reference).empty


def test_anomaly_curves_rank_by_the_reconstruction_error() -> None:
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(2000, 6))
    anomalous = np.arange(2000) % 4 == 0
    reconstruction = inputs + np.where(anomalous[:, None], 1.0, 0.01) * rng.normal(size=inputs.shape)
    frame = curves.of_backend("cpp", {}, "anomaly", reconstruction, reconstruction, labels=anomalous.astype(int),
                              signal_class=1, inputs=inputs)
    eff = frame[frame["curve"] == curves.EFFICIENCY]
    assert eff.loc[np.isclose(eff["x"], 0.01), "y"].item() > 0.9  # anomalies are found at a 1% false-positive rate


def test_stored_curves_are_found_by_run_and_ignore_what_cannot_be_read(tmp_path: Path) -> None:
    reference, labels = _classifier_outputs(500)
    run_file = tmp_path / "20250101T000000-1-aaaaaaaa.parquet"
    part = curves.of_backend("cpp", {}, "classification", reference * 1.001, reference, labels=labels, signal_class=0)
    path = curves.store([part], run_file, run_id="run/1", model="jet_dnn")
    assert path == curves.path_for(run_file, "run/1") and curves.is_curves_file(path) and path.parent == tmp_path
    assert "/" not in path.name.removesuffix(curves.SUFFIX)  # a run id never names another folder
    loaded = curves.load(tmp_path, ["run/1", "no-such-run"])
    assert len(loaded) == len(part) and set(loaded["run_id"]) == {"run/1"} and set(loaded["model"]) == {"jet_dnn"}
    assert curves.load(tmp_path / "missing", ["run/1"]).empty
    path.write_bytes(b"not parquet")
    assert curves.read_file(path)[0] is None and curves.load(tmp_path, ["run/1"]).empty


def _results_run(run_id: str, n: int = 1) -> pd.DataFrame:
    return pd.DataFrame([{"run_id": run_id, "model": "jet_dnn", "backend": f"backend{i}", "status": "ok", "batch_size": 1,
                          "options": {"threads": i + 1}, "timestamp": pd.Timestamp("2024-01-02T03:04:05Z")} for i in range(n)])


def _stale_leftover(folder, target_name: str, data: bytes, age_s: float):
    """A temp file as atomic_write_bytes names it, last modified `age_s` seconds ago."""
    leftover = folder / f".{target_name}.k1ll3d_.tmp"
    leftover.write_bytes(data)
    stamp = leftover.stat().st_mtime - age_s
    os.utime(leftover, (stamp, stamp))
    return leftover


# -- a run's curves file lives next to it and is not a results file ---------------------------------------

def _curves_of(run_id: str) -> pd.DataFrame:
    reference = np.linspace(0.0, 1.0, 40).reshape(20, 2)
    part = curves.of_backend("backend1", {"threads": 2}, "regression", reference + 1e-3, reference)
    return part.assign(run_id=run_id, model="jet_dnn")


def test_curves_files_are_ignored_by_name_without_a_warning(tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    run_file = results.append(_results_run("with-curves", n=2), tmp_path)
    curves_file = curves.store([_curves_of("with-curves")], run_file, run_id="with-curves", model="jet_dnn")
    contents = results.read_store(tmp_path)
    assert contents.files == (run_file,) and not contents.skipped and not recwarn.list
    assert list(contents.frame["run_id"]) == ["with-curves"] * 2
    curves_file.write_bytes(b"broken curves")  # still not a results file, still no warning: it means "no curves"
    assert len(results.load(tmp_path)) == 2 and not recwarn.list


def test_stale_curves_leftovers_are_recovered_or_removed(tmp_path: Path) -> None:
    run_file = results.append(_results_run("killed", n=1), tmp_path)
    target = curves.path_for(run_file, "killed")
    buffer = io.BytesIO()
    curves.conform(_curves_of("killed")).to_parquet(buffer, index=False)
    old = results.STALE_TMP_AGE_S + 60
    complete = _stale_leftover(tmp_path, target.name, buffer.getvalue(), old)
    partial = _stale_leftover(tmp_path, curves.path_for(run_file, "other").name, buffer.getvalue()[:100], old)
    with pytest.warns(results.StoreWarning):
        contents = results.read_store(tmp_path)
    assert contents.recovered == (target,) and not complete.exists() and not partial.exists()
    assert contents.files == (run_file,) and not contents.skipped
    assert len(curves.load(tmp_path, ["killed"])) == len(_curves_of("killed"))
