"""The measurement engine: rows, statistics, fidelity, physics metrics, failures, the store."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import yukti
from yukti import curves
from yukti.engine import TimingPolicy, batch_of, time_calls
from yukti.results import COLUMNS

QUICK = TimingPolicy(time_budget_s=0.05, min_calls=20, warmup_calls=2, warmup_s=0.0)


class _BrokenRunner(yukti.Runner):
    name = "broken_engine_test"

    def _prepare(self, model, **options):
        raise RuntimeError("the compiler exploded")


class _NoisyRunner(yukti.Runner):
    """Adds a known perturbation so fidelity numbers can be checked exactly."""

    name = "noisy_engine_test"

    def _prepare(self, model, **options):
        self._ref = yukti.runner("reference", model)

    def _run(self, arrays):
        out = self._ref.run_validated(arrays)[0].copy()
        out[:, 0] += 0.25  # shifts class-0 probability: max |diff| is exactly 0.25
        return [out]


@pytest.fixture(scope="module")
def frame(jet_dnn):
    return yukti.benchmark(jet_dnn, backends=["reference", "onnxruntime"], batch_sizes=(1, 16), policy=QUICK,
                           max_eval_samples=2000)


def test_one_row_per_backend_and_batch(frame):
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert sorted(zip(frame.backend, frame.batch_size)) == [("onnxruntime", 1), ("onnxruntime", 16), ("reference", 1), ("reference", 16)]
    assert (frame.status == "ok").all()
    assert frame.run_id.nunique() == 1


def test_latency_statistics_are_ordered(frame):
    assert (frame.latency_p50_us <= frame.latency_p90_us).all()
    assert (frame.latency_p90_us <= frame.latency_p99_us).all()
    assert (frame.n_calls >= QUICK.min_calls).all()
    np.testing.assert_allclose(frame.throughput_per_s, frame.batch_size / (frame.latency_mean_us * 1e-6))


def test_fidelity_and_physics(frame, jet_dnn):
    ort = frame[frame.backend == "onnxruntime"].iloc[0]
    assert ort.max_abs_diff <= 1e-5 and ort.argmax_agreement == 1.0
    ref = frame[frame.backend == "reference"].iloc[0]
    assert ref.max_abs_diff == 0.0
    assert 0.5 < ref.auc <= 1.0 and 0.0 <= ref.eff_at_bkg_1pct <= ref.eff_at_bkg_10pct <= 1.0
    assert ort.auc == pytest.approx(ref.auc, abs=1e-6)
    assert ref.dataset == "jets_synthetic (synthetic)" and ref.dataset_synthetic
    assert ref.signal_class == "t" and ref.n_samples == 2000


def test_environment_and_cost_columns(frame):
    row = frame.iloc[0]
    assert row.threads == 1 and row.cpu and row.python
    assert json.loads(row.packages)["numpy"] == np.__version__
    ort = frame[frame.backend == "onnxruntime"].iloc[0]
    assert json.loads(ort.options) == {"threads": 1, "graph_optimization_level": "all", "device": "cpu", "providers": None}
    assert (frame.prepare_s >= 0).all() and (frame.peak_rss_mb > 0).all()


def test_results_are_stored_and_reloaded(frame):
    stored = yukti.results.load()
    mine = stored[stored.run_id == frame.run_id.iloc[0]]
    assert len(mine) == len(frame)
    assert np.allclose(sorted(mine.latency_p50_us), sorted(frame.latency_p50_us))


def test_failures_are_rows_not_crashes(jet_dnn):
    class Missing(yukti.Runner):
        name = "missing_engine_test"

        @classmethod
        def available(cls):
            return False, "no such hardware"

    yukti.register(_BrokenRunner.name, _BrokenRunner)
    yukti.register(Missing.name, Missing)
    try:
        df = yukti.benchmark(jet_dnn, backends=["onnxruntime", _BrokenRunner.name, Missing.name], batch_sizes=(1,),
                             policy=QUICK, max_eval_samples=200, store=False)
    finally:
        yukti.unregister(_BrokenRunner.name)
        yukti.unregister(Missing.name)
    status = dict(zip(df.backend, df.status))
    assert status == {"onnxruntime": "ok", _BrokenRunner.name: "error", Missing.name: "unavailable"}
    errors = dict(zip(df.backend, df.error))
    assert "the compiler exploded" in errors[_BrokenRunner.name] and "no such hardware" in errors[Missing.name]


def test_fidelity_detects_a_perturbed_backend(jet_dnn):
    yukti.register(_NoisyRunner.name, _NoisyRunner)
    try:
        df = yukti.benchmark(jet_dnn, backends=[_NoisyRunner.name], batch_sizes=(4,), policy=QUICK, max_eval_samples=500, store=False)
    finally:
        yukti.unregister(_NoisyRunner.name)
    row = df.iloc[0]
    assert row.max_abs_diff == pytest.approx(0.25, abs=1e-6)
    reference = yukti.runner("reference", jet_dnn)(jet_dnn.data.X[:500])
    shifted = reference.copy()
    shifted[:, 0] += 0.25
    assert row.argmax_agreement == pytest.approx((shifted.argmax(1) == reference.argmax(1)).mean())
    assert row.argmax_agreement < 1.0


def test_unknown_backend_fails_before_measuring(jet_dnn):
    with pytest.raises(yukti.UnknownBackendError):
        yukti.benchmark(jet_dnn, backends=["nope"], store=False)


def test_mismatched_dataset_is_a_clear_error(jet_dnn):
    with pytest.raises(yukti.InputError, match=r"pixel_clusters_synthetic.*does not fit model 'jet_dnn'"):
        yukti.benchmark(jet_dnn, backends=["onnxruntime"], data=yukti.datasets.pixel_clusters_synthetic(n_samples=50), store=False)


def test_model_without_data_uses_random_inputs(tmp_path, jet_dnn):
    bare = yukti.load(jet_dnn.save(tmp_path / "bare.onnx"))
    df = yukti.benchmark(bare, backends=["onnxruntime"], batch_sizes=(2,), policy=QUICK, store=False)
    row = df.iloc[0]
    assert row.dataset == "random inputs" and pd.isna(row.auc) and row.argmax_agreement == 1.0


def test_signal_class_choice_changes_physics(jet_dnn):
    common = dict(backends=["onnxruntime"], batch_sizes=(1,), policy=QUICK, max_eval_samples=3000, store=False)
    top = yukti.benchmark(jet_dnn, signal="t", **common).iloc[0]
    gluon = yukti.benchmark(jet_dnn, signal="g", **common).iloc[0]
    assert top.signal_class == "t" and gluon.signal_class == "g" and top.auc != gluon.auc


def test_timing_policy_budget_and_counts(jet_dnn):
    run = yukti.runner("onnxruntime", jet_dnn)
    times = time_calls(run, batch_of([jet_dnn.data.X], 1), TimingPolicy(time_budget_s=1e-9, min_calls=37, warmup_calls=1, warmup_s=0))
    assert len(times) == 37 and (times > 0).all()
    capped = time_calls(run, batch_of([jet_dnn.data.X], 1), TimingPolicy(time_budget_s=60, min_calls=1, max_calls=25, warmup_calls=1, warmup_s=0))
    assert len(capped) == 25


def test_batch_of_repeats_small_data():
    (x,) = batch_of([np.arange(6, dtype=np.float32).reshape(3, 2)], 7)
    assert x.shape == (7, 2) and x.flags.c_contiguous
    np.testing.assert_array_equal(x[3:6], x[:3])


# -- storing as it goes, and arguments checked --------------------------------------------------------

class _Killed(BaseException):
    """Stands in for a kill: not an Exception, so the engine does not turn it into an error row."""


class _KilledRunner(yukti.Runner):
    name = "killed_engine_test"

    def _prepare(self, model, **options):
        raise _Killed()


def test_each_finished_backend_is_stored_before_the_next_starts(tmp_path, jet_dnn):
    yukti.register(_KilledRunner.name, _KilledRunner)
    try:
        with pytest.raises(_Killed):
            yukti.benchmark(jet_dnn, backends=["reference", "onnxruntime", _KilledRunner.name, "torch"], batch_sizes=(1, 4),
                            policy=QUICK, max_eval_samples=200, store=str(tmp_path))
    finally:
        yukti.unregister(_KilledRunner.name)
    stored = yukti.results.load(tmp_path)
    assert sorted(zip(stored.backend, stored.batch_size)) == [("onnxruntime", 1), ("onnxruntime", 4), ("reference", 1), ("reference", 4)]
    assert stored.run_id.nunique() == 1 and (stored.status == "ok").all()
    # one run, one results file and its curves file, both rewritten as backends finish
    (run_file,) = [p for p in tmp_path.iterdir() if not curves.is_curves_file(p)]
    assert [p.name for p in tmp_path.iterdir() if p != run_file] == [curves.path_for(run_file, stored.run_id[0]).name]
    assert set(curves.load(tmp_path, stored.run_id.unique())["backend"]) == {"reference", "onnxruntime"}


def test_a_completed_run_is_one_file_with_every_row(tmp_path, jet_dnn):
    frame = yukti.benchmark(jet_dnn, backends=["reference", "onnxruntime"], batch_sizes=(1, 2), policy=QUICK,
                            max_eval_samples=200, store=str(tmp_path))
    (path,) = [p for p in tmp_path.iterdir() if not curves.is_curves_file(p)]
    stored = yukti.results.load(tmp_path)
    assert len(stored) == len(frame) == 4
    assert list(stored.backend) == list(frame.backend) and list(stored.batch_size) == list(frame.batch_size)


@pytest.mark.parametrize("kwargs, name", [
    (dict(threads=0), "threads"), (dict(threads=-2), "threads"), (dict(threads=1.5), "threads"), (dict(threads=True), "threads"),
    (dict(max_eval_samples=0), "max_eval_samples"), (dict(batch_sizes=(1, 0)), "batch_sizes"), (dict(batch_sizes=()), "batch_sizes"),
    (dict(batch_sizes=(2.5,)), "batch_sizes"), (dict(batch_sizes=4), "batch_sizes"), (dict(policy="fast"), "policy"),
])
def test_benchmark_refuses_meaningless_arguments(tmp_path, jet_dnn, kwargs, name):
    with pytest.raises(yukti.InputError, match=name):
        yukti.benchmark(jet_dnn, backends=["onnxruntime"], store=str(tmp_path), **kwargs)
    assert not any(tmp_path.iterdir())  # refused before anything was measured or stored


@pytest.mark.parametrize("kwargs, name", [
    (dict(time_budget_s=-1), "time_budget_s"), (dict(time_budget_s=0), "time_budget_s"),
    (dict(time_budget_s=float("nan")), "time_budget_s"), (dict(time_budget_s=float("inf")), "time_budget_s"),
    (dict(min_calls=0), "min_calls"), (dict(min_calls=2.5), "min_calls"), (dict(max_calls=0), "max_calls"),
    (dict(warmup_calls=-1), "warmup_calls"), (dict(warmup_s=-0.1), "warmup_s"), (dict(time_budget_s="1"), "time_budget_s"),
])
def test_timing_policy_refuses_meaningless_values(kwargs, name):
    with pytest.raises(yukti.InputError, match=rf"^{name} must be"):
        TimingPolicy(**kwargs)


def test_timing_policy_takes_any_number_type_as_plain_values():
    policy = TimingPolicy(time_budget_s=np.float32(0.5), min_calls=np.int64(3), warmup_calls=0, warmup_s=0)
    assert type(policy.time_budget_s) is float and type(policy.min_calls) is int and policy.min_calls == 3


def test_a_stored_run_keeps_the_fidelity_curves_of_every_backend(tmp_path, jet_dnn):
    frame = yukti.benchmark(jet_dnn, backends=["reference", "onnxruntime", "torch"],
                            batch_sizes=(1,), policy=QUICK, max_eval_samples=1000, store=str(tmp_path))
    stored = curves.load(tmp_path, frame.run_id.unique())
    assert set(stored["model"]) == {"jet_dnn"} and set(stored["task"]) == {"classification"}
    # the options are the stored rows' (JSON text), so every curve finds its row
    keys = ["backend", "options"]
    assert set(map(tuple, stored[keys].drop_duplicates().to_numpy())) == set(map(tuple, frame[keys].drop_duplicates().to_numpy()))
    eff = stored[stored["curve"] == curves.EFFICIENCY]
    assert set(eff["backend"]) == {"reference", "onnxruntime", "torch"}
    for backend, row in frame.groupby("backend").first().iterrows():  # the curve passes through the stored summary
        on_curve = eff[(eff["backend"] == backend) & np.isclose(eff["x"], 0.01)]["y"].item()
        assert on_curve == pytest.approx(row["eff_at_bkg_1pct"], abs=1e-9)
    diffs = stored[stored["curve"] == curves.ABS_DIFF]
    assert set(diffs["backend"]) == {"onnxruntime", "torch"}  # the reference is the yardstick
    for _, hist in diffs.groupby("backend"):
        assert hist["y"].sum() + hist["n_equal"].iloc[0] == hist["n_values"].iloc[0] == 1000 * 5


def test_a_backend_whose_curves_fail_is_still_measured(tmp_path, jet_dnn, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no curves today")

    monkeypatch.setattr(curves, "of_backend", broken)
    frame = yukti.benchmark(jet_dnn, backends=["onnxruntime"], batch_sizes=(1,), policy=QUICK, max_eval_samples=200,
                            store=str(tmp_path))
    assert (frame.status == "ok").all()
    assert curves.load(tmp_path, frame.run_id.unique()).empty and "no fidelity curves for onnxruntime" in caplog.text
