"""yukti.choose / yukti.pareto / yukti.Session: ranking, constraints, stored versus measured numbers.

Most tests hand `choose` a results store built here (rows for small fake backends registered for
the test), so every number is known and nothing is timed; a few measure real backends briefly.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import yukti
from yukti import environment, registry, results
from yukti.chooser import _requested_options
from yukti.runner import Runner, Support

FAST = yukti.TimingPolicy(time_budget_s=0.02, min_calls=5, warmup_calls=2, warmup_s=0.0)


class _Fake(Runner):
    """Available, supports everything, returns zeros; only its stored rows matter."""

    default_options = {"threads": 1, "flavour": "plain"}

    @classmethod
    def version(cls) -> str:
        return "1.0"

    def _prepare(self, model, **options):
        return {}

    def _run(self, arrays):
        return [np.zeros((len(arrays[0]), 5), dtype=np.float32)]


class FakeA(_Fake):
    name = "fake_a"


class FakeB(_Fake):
    name = "fake_b"


class FakeC(_Fake):
    name = "fake_c"


class FakeMissing(_Fake):
    name = "fake_missing"

    @classmethod
    def available(cls):
        return False, "needs the moon package"


class FakeRefuses(_Fake):
    name = "fake_refuses"

    @classmethod
    def supports(cls, model):
        return Support(False, (("Gemm", "fc1"),), "fake_refuses does not support operator(s) Gemm")


FAKES = (FakeA, FakeB, FakeC, FakeMissing, FakeRefuses)
ABC = ["fake_a", "fake_b", "fake_c"]


@pytest.fixture
def fakes():
    for cls in FAKES:
        yukti.register(cls.name, cls)
    yield
    for cls in FAKES:
        yukti.unregister(cls.name)


@pytest.fixture
def no_measuring(monkeypatch):
    """Any attempt to measure fails the test: choose must answer from the store alone."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"measured although stored results exist: {args} {kwargs}")

    monkeypatch.setattr(yukti, "benchmark", refuse)
    monkeypatch.setattr(yukti.engine, "benchmark", refuse)
    monkeypatch.setattr(yukti.engine, "_measure_backend", refuse)


def row(model, backend: str, **values) -> dict:
    """A stored row that `choose` may reuse for `model` at batch 1, 1 thread, on the model's data."""
    cls = registry.runner_class(backend)
    base = {
        "run_id": "run1", "model": model.name, "model_hash": model.hash, "backend": backend,
        "backend_version": registry.backend_info(backend).version, "options": _requested_options(cls, 1, {}),
        "status": "ok", "error": None, "batch_size": 1, "threads": 1, "dataset": model.data.label,
        "signal_class": model.data.signal_name, "n_samples": 1000, "host": environment._static()["host"],
        "timestamp": pd.Timestamp.now(tz="UTC"),
        "latency_p50_us": 10.0, "latency_p99_us": 20.0, "throughput_per_s": 1e5, "argmax_agreement": 1.0,
        "auc": 0.9, "prepare_s": 0.5,
    }
    base.update(values)
    return base


def store_of(tmp_path, rows: list[dict]) -> str:
    folder = tmp_path / "store"
    results.append(pd.DataFrame(rows), folder)
    return str(folder)


# -- ranking ------------------------------------------------------------------------------------

@pytest.mark.parametrize("objective, expected", [("p99", "fake_a"), ("p50", "fake_b"), ("throughput", "fake_c")])
def test_ranking_follows_the_objective(tmp_path, jet_dnn, fakes, no_measuring, objective, expected):
    store = store_of(tmp_path, [
        row(jet_dnn, "fake_a", latency_p50_us=5.0, latency_p99_us=6.0, throughput_per_s=1e5),
        row(jet_dnn, "fake_b", latency_p50_us=3.0, latency_p99_us=9.0, throughput_per_s=2e5),
        row(jet_dnn, "fake_c", latency_p50_us=4.0, latency_p99_us=30.0, throughput_per_s=3e5),
    ])
    choice = yukti.choose(jet_dnn, backends=ABC, objective=objective, store=store)
    assert choice.winner is not None and choice.winner.backend == expected
    column, higher = yukti.chooser.OBJECTIVES[objective]
    values = [c[column] for c in choice]
    assert values == sorted(values, reverse=higher)
    assert [c.rank for c in choice] == [1, 2, 3]
    assert all(c.source == "stored" for c in choice)
    assert expected in choice.explain().splitlines()[1]


def test_candidates_meeting_constraints_rank_before_faster_ones_that_miss(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [
        row(jet_dnn, "fake_a", latency_p99_us=2.0, argmax_agreement=0.95),  # fastest, but inaccurate
        row(jet_dnn, "fake_b", latency_p99_us=8.0, argmax_agreement=1.0),
        row(jet_dnn, "fake_c", latency_p99_us=50.0, argmax_agreement=0.999),  # misses two: ranked last
    ])
    choice = yukti.choose(jet_dnn, backends=ABC, max_accuracy_drop=0.01, max_p99_us=40, store=store)
    assert [c.backend for c in choice] == ["fake_b", "fake_a", "fake_c"]
    assert choice.winner.backend == "fake_b"
    assert [m.name for m in choice.get("fake_a").misses] == ["max_accuracy_drop"]


# -- each constraint ----------------------------------------------------------------------------

# (keyword, row column, passing value, failing value, limit)
CASES = [
    ("max_p50_us", "latency_p50_us", 4.0, 12.0, 5.0),
    ("max_p99_us", "latency_p99_us", 4.0, 12.0, 5.0),
    ("min_throughput_per_s", "throughput_per_s", 3e5, 1e5, 2e5),
    ("max_accuracy_drop", "argmax_agreement", 0.999, 0.98, 0.005),
    ("max_auc_drop", "auc", 0.899, 0.85, 0.01),  # the stored reference has AUC 0.9
    ("max_prepare_s", "prepare_s", 0.1, 30.0, 1.0),
]


@pytest.mark.parametrize("keyword, column, good, bad, limit", CASES, ids=[c[0] for c in CASES])
def test_each_constraint_is_met_or_missed_by_how_much(tmp_path, jet_dnn, fakes, no_measuring, keyword, column, good, bad, limit):
    # fake_a is better in the objective (p99, or prepare time when p99 is the constraint) but fails the constraint
    objective = "prepare" if column == "latency_p99_us" else "p99"
    store = store_of(tmp_path, [
        row(jet_dnn, "fake_a", **{"latency_p99_us": 1.0, "prepare_s": 0.01, column: bad}),
        row(jet_dnn, "fake_b", **{"latency_p99_us": 9.0, "prepare_s": 0.9, column: good}),
        row(jet_dnn, "reference", auc=0.9, latency_p99_us=500.0),
    ])
    choice = yukti.choose(jet_dnn, backends=ABC[:2], store=store, objective=objective, **{keyword: limit})
    assert choice.winner.backend == "fake_b"
    good_check, = choice.get("fake_b").checks
    bad_check, = choice.get("fake_a").checks
    assert good_check.ok and good_check.excess <= 0
    assert not bad_check.ok and bad_check.name == keyword
    spec = yukti.chooser.CONSTRAINTS[keyword]
    value = {"argmax_agreement": 1 - bad, "auc": 0.9 - bad}.get(column, bad)  # drops are derived
    assert bad_check.value == pytest.approx(value)
    assert bad_check.excess == pytest.approx((value - limit) if spec.upper else (limit - value))
    assert bad_check.excess > 0
    assert f"misses {spec.label}" in choice.get("fake_a").verdict()
    # a limit both satisfy changes the winner back to the better objective
    loose = 2 * value if spec.upper else value / 2
    assert yukti.choose(jet_dnn, backends=ABC[:2], store=store, objective=objective, **{keyword: loose}).winner.backend == "fake_a"


def test_auc_drop_uses_the_reference_of_the_same_samples(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [
        row(jet_dnn, "fake_a", auc=0.80, n_samples=1000),
        row(jet_dnn, "reference", auc=0.90, n_samples=1000, run_id="run1"),
        row(jet_dnn, "reference", auc=0.70, n_samples=50, run_id="other"),  # other samples: not the baseline
    ])
    choice = yukti.choose(jet_dnn, backends=["fake_a"], store=store, measure="never", max_auc_drop=0.2)
    assert choice.winner.backend == "fake_a"
    assert choice.winner["reference_auc"] == pytest.approx(0.90)
    assert choice.winner["auc_drop"] == pytest.approx(0.10)


def test_auc_constraint_without_a_stored_baseline_is_not_silently_met(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [row(jet_dnn, "fake_a", auc=0.8)])  # no reference row
    choice = yukti.choose(jet_dnn, backends=["fake_a"], store=store, measure="never", max_auc_drop=0.5)
    assert choice.winner is None
    assert choice.get("fake_a").status == "not measured"


def test_auc_constraint_needs_labels(jet_dnn, fakes):
    unlabelled = yukti.Dataset("nolabels", jet_dnn.data.X[:100], None, jet_dnn.data.feature_names, jet_dnn.data.class_names)
    with pytest.raises(yukti.InputError, match="labelled"):
        yukti.choose(jet_dnn, backends=["fake_a"], data=unlabelled, max_auc_drop=0.01, store=False)


# -- no winner ----------------------------------------------------------------------------------

def test_no_winner_says_what_each_candidate_misses(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [
        row(jet_dnn, "fake_a", latency_p99_us=12.0, argmax_agreement=0.9),
        row(jet_dnn, "fake_b", latency_p99_us=7.0, argmax_agreement=1.0),
    ])
    choice = yukti.choose(jet_dnn, backends=[*ABC, "fake_missing", "fake_refuses"], max_p99_us=5, max_accuracy_drop=0.01,
                          store=store, measure="never")
    assert choice.winner is None
    assert len(choice) == 5  # nothing dropped
    a, b = choice.get("fake_a"), choice.get("fake_b")
    assert {m.name for m in a.misses} == {"max_p99_us", "max_accuracy_drop"}
    assert [m.name for m in b.misses] == ["max_p99_us"] and b.misses[0].excess == pytest.approx(2.0)
    assert choice[0].backend == "fake_b"  # fewest misses first
    assert choice.get("fake_c").status == "not measured"
    assert choice.get("fake_missing").status == "unavailable" and "moon" in choice.get("fake_missing").reason
    assert choice.get("fake_refuses").status == "unsupported" and "Gemm" in choice.get("fake_refuses").reason
    text = choice.explain()
    assert "no winner" in text
    assert "p99 latency 7 µs > 5 µs (over by 2 µs" in text
    assert "accuracy drop 0.1 > 0.01 (over by 0.09" in text
    for name in ("fake_a", "fake_b", "fake_c", "fake_missing", "fake_refuses"):
        assert f"  {name}: " in text
    table = choice.table()
    assert list(table["backend"]) == [c.backend for c in choice] and not table["meets"].any()


def test_without_constraints_the_best_measured_candidate_wins(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [row(jet_dnn, "fake_b", latency_p99_us=7.0)])
    choice = yukti.choose(jet_dnn, backends=["fake_missing", "fake_a", "fake_b"], store=store, measure="never")
    assert choice.winner.backend == "fake_b"
    assert [c.backend for c in choice][0] == "fake_b" and choice[-1].status in ("unavailable", "not measured")


# -- stored versus measured ---------------------------------------------------------------------

class Recorder:
    """Stands in for yukti.benchmark: records the call and returns rows built from `make`."""

    def __init__(self, model, **values):
        self.model, self.values, self.calls = model, values, []

    def __call__(self, model, backends, **kwargs):
        self.calls.append((list(backends), kwargs))
        return results.conform(pd.DataFrame([row(self.model, b, run_id="fresh", **self.values) for b in backends]))


@pytest.mark.parametrize("field, other", [
    ("backend_version", "0.9"), ("host", "another-host"), ("batch_size", 64), ("threads", 4),
    ("model_hash", "0" * 64), ("status", "error"), ("dataset", "magic"),
    ("options", {"threads": 1, "flavour": "spicy"}),
])
def test_a_row_from_another_setting_is_not_reused(tmp_path, jet_dnn, fakes, monkeypatch, field, other):
    store = store_of(tmp_path, [row(jet_dnn, "fake_a", **{field: other}), row(jet_dnn, "fake_b")])
    never = yukti.choose(jet_dnn, backends=["fake_a", "fake_b"], store=store, measure="never")
    assert never.get("fake_a").status == "not measured" and never.get("fake_b").source == "stored"
    recorder = Recorder(jet_dnn, latency_p99_us=3.0)
    monkeypatch.setattr(yukti, "benchmark", recorder)
    auto = yukti.choose(jet_dnn, backends=["fake_a", "fake_b"], store=store, measure="auto")
    assert [backends for backends, _ in recorder.calls] == [["fake_a"]]  # only the missing one
    assert recorder.calls[0][1]["batch_sizes"] == [1] and recorder.calls[0][1]["threads"] == 1
    assert auto.get("fake_a").source == "measured" and auto.get("fake_a").run_id == "fresh"
    assert auto.get("fake_b").source == "stored" and auto.winner.backend == "fake_a"


def test_the_latest_matching_row_is_used(tmp_path, jet_dnn, fakes, no_measuring):
    now = pd.Timestamp.now(tz="UTC")
    store = store_of(tmp_path, [row(jet_dnn, "fake_a", latency_p99_us=9.0, timestamp=now, run_id="new"),
                                row(jet_dnn, "fake_a", latency_p99_us=1.0, timestamp=now - pd.Timedelta(days=1), run_id="old")])
    candidate = yukti.choose(jet_dnn, backends=["fake_a"], store=store).winner
    assert candidate.run_id == "new" and candidate["latency_p99_us"] == 9.0


def test_measure_always_remeasures_stored_candidates(tmp_path, jet_dnn, fakes, monkeypatch):
    store = store_of(tmp_path, [row(jet_dnn, "fake_a"), row(jet_dnn, "fake_b")])
    recorder = Recorder(jet_dnn)
    monkeypatch.setattr(yukti, "benchmark", recorder)
    choice = yukti.choose(jet_dnn, backends=["fake_a", "fake_b", "fake_missing"], store=store, measure="always")
    assert [backends for backends, _ in recorder.calls] == [["fake_a", "fake_b"]]  # the unavailable one is not run
    assert {c.source for c in choice if c.measured} == {"measured"}


def test_a_failed_measurement_is_a_candidate_with_its_error(tmp_path, jet_dnn, fakes, monkeypatch):
    def failing(model, backends, **kwargs):
        return results.conform(pd.DataFrame([row(model, b, status="error", error="RuntimeError: boom\ntrace") for b in backends]))

    monkeypatch.setattr(yukti, "benchmark", failing)
    choice = yukti.choose(jet_dnn, backends=["fake_a"], store=False)
    assert choice.winner is None and choice[0].status == "error" and choice[0].reason == "RuntimeError: boom"


def test_measures_for_real_then_reuses_the_stored_rows(tmp_path, jet_dnn, monkeypatch):
    store = str(tmp_path / "store")
    kwargs = dict(backends=["onnxruntime", "reference"], store=store, policy=FAST, max_eval_samples=300)
    first = yukti.choose(jet_dnn, max_accuracy_drop=0.01, max_auc_drop=1e-3, **kwargs)
    assert {c.source for c in first} == {"measured"}
    assert first.winner is not None  # both are float: (nearly) identical decisions on the same samples
    assert all(c["accuracy_drop"] <= 0.01 and abs(c["auc_drop"]) <= 1e-3 for c in first)
    assert first.get("reference")["auc_drop"] == 0.0  # the baseline itself
    assert all(c["latency_p99_us"] >= c["latency_p50_us"] > 0 for c in first)
    monkeypatch.setattr(yukti, "benchmark", lambda *a, **k: pytest.fail("stored rows were not reused"))
    again = yukti.choose(jet_dnn, max_accuracy_drop=0.01, max_auc_drop=1e-3, **kwargs)
    assert {c.source for c in again} == {"stored"}
    assert [(c.backend, c["latency_p99_us"]) for c in again] == [(c.backend, c["latency_p99_us"]) for c in first]


def test_bad_arguments(jet_dnn):
    with pytest.raises(yukti.UnknownNameError, match="objective"):
        yukti.choose(jet_dnn, objective="speed", store=False)
    with pytest.raises(yukti.UnknownNameError, match="measure"):
        yukti.choose(jet_dnn, measure="sometimes", store=False)
    with pytest.raises(yukti.InputError, match="max_p99_us"):
        yukti.choose(jet_dnn, max_p99_us=-1, store=False)
    with pytest.raises(yukti.UnknownBackendError):
        yukti.choose(jet_dnn, backends=["tensorrt"], store=False)


@pytest.mark.parametrize("kwargs, name", [
    (dict(threads=0), "threads"), (dict(threads=-2), "threads"), (dict(batch_size=0), "batch_size"),
    (dict(batch_size=1.5), "batch_size"), (dict(max_eval_samples=0), "max_eval_samples"),
    (dict(max_p50_us=float("nan")), "max_p50_us"), (dict(min_throughput_per_s=-1), "min_throughput_per_s"),
    (dict(max_accuracy_drop="a lot"), "max_accuracy_drop"), (dict(max_prepare_s=-0.5), "max_prepare_s"),
    (dict(policy={"time_budget_s": 1}), "policy"),
])
def test_meaningless_arguments_are_refused_naming_the_argument(jet_dnn, kwargs, name):
    with pytest.raises(yukti.InputError, match=rf"^{name} must be"):
        yukti.choose(jet_dnn, store=False, measure="never", **kwargs)


def test_an_infinite_limit_means_no_limit(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [row(jet_dnn, "fake_a", latency_p99_us=1e9)])
    choice = yukti.choose(jet_dnn, backends=["fake_a"], max_p99_us=math.inf, store=store)
    assert choice.winner is not None and choice.winner.backend == "fake_a"


def test_session_refuses_zero_threads(jet_dnn):
    with pytest.raises(yukti.InputError, match="^threads must be"):
        yukti.Session(jet_dnn, backend="onnxruntime", threads=0)


def test_unreadable_store_files_do_not_stop_the_choice(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [row(jet_dnn, "fake_a", latency_p99_us=4.0)])
    (tmp_path / "store" / "garbage.parquet").write_bytes(b"PAR1 not really")
    (tmp_path / "store" / "empty.parquet").write_bytes(b"")
    with pytest.warns(results.StoreWarning) as caught:
        choice = yukti.choose(jet_dnn, backends=["fake_a"], max_p99_us=5, store=store)
    assert choice.winner is not None and choice.winner.backend == "fake_a" and choice.winner.source == "stored"
    assert sorted(name for name in ("garbage.parquet", "empty.parquet") if any(name in str(w.message) for w in caught)) == [
        "empty.parquet", "garbage.parquet"]


# -- Session ------------------------------------------------------------------------------------

def test_session_prepares_and_runs_the_winner(tmp_path, jet_dnn, no_measuring):
    store = store_of(tmp_path, [row(jet_dnn, "onnxruntime", latency_p99_us=4.0),
                                row(jet_dnn, "reference", latency_p99_us=400.0)])
    session = yukti.Session(jet_dnn, backends=["onnxruntime", "reference"], max_p99_us=10, store=store)
    assert session.backend == "onnxruntime" and session.choice.winner.backend == "onnxruntime"
    assert session.info["backend"] == "onnxruntime" and session.info["options"]["threads"] == 1
    x = jet_dnn.data.X[:32]
    np.testing.assert_allclose(session(x), yukti.runner("reference", jet_dnn)(x), rtol=1e-4, atol=1e-5)
    assert "winner: onnxruntime" in session.explain()


def test_session_without_a_winner_raises_with_every_miss(tmp_path, jet_dnn, no_measuring):
    store = store_of(tmp_path, [row(jet_dnn, "onnxruntime", latency_p99_us=40.0),
                                row(jet_dnn, "reference", latency_p99_us=400.0)])
    with pytest.raises(yukti.NoBackendMeetsConstraints) as caught:
        yukti.Session(jet_dnn, backends=["onnxruntime", "reference"], max_p99_us=10, store=store)
    message = str(caught.value)
    assert "onnxruntime: misses p99 latency 40 µs > 10 µs (over by 30 µs" in message
    assert "reference: misses p99 latency 400 µs > 10 µs (over by 390 µs" in message
    assert caught.value.choice.winner is None


def test_session_with_a_named_backend(jet_dnn):
    session = yukti.Session(jet_dnn, backend="onnxruntime")
    assert session.choice is None and session.backend == "onnxruntime"
    assert session(jet_dnn.data.X[:3]).shape == (3, 5)
    with pytest.raises(yukti.UnknownNameError, match="max_latency"):
        yukti.Session(jet_dnn, max_latency=3)


# -- pareto -------------------------------------------------------------------------------------

def frame_for_pareto() -> pd.DataFrame:
    return pd.DataFrame({
        "backend": ["a", "b", "c", "d", "e", "f", "g"],
        "latency_p99_us": [1.0, 2.0, 3.0, 2.0, 0.5, np.nan, 0.1],
        "argmax_agreement": [0.99, 1.0, 1.0, 0.99, 0.95, 1.0, 1.0],
        "prepare_s": [5.0, 1.0, 0.5, 1.0, 9.0, 0.1, 0.1],
        "status": ["ok", "ok", "ok", "ok", "ok", "ok", "error"],
    })


def test_pareto_keeps_the_non_dominated_rows():
    front = yukti.pareto(frame_for_pareto())
    # d is dominated by b (same latency and prepare, lower agreement); f has no latency; g is not ok
    assert sorted(front["backend"]) == ["a", "b", "c", "e"]
    assert "accuracy_drop" in front and front.set_index("backend").loc["e", "accuracy_drop"] == pytest.approx(0.05)
    # the old name of the same metric still works, under the name asked for
    old_name = yukti.pareto(frame_for_pareto(), objectives=("latency_p99_us", "accuracy_loss", "prepare_s"))
    assert list(old_name["backend"]) == list(front["backend"])
    assert old_name.set_index("backend").loc["e", "accuracy_loss"] == pytest.approx(0.05)
    assert list(front["latency_p99_us"]) == sorted(front["latency_p99_us"])
    assert list(front.index) == [4, 0, 1, 2]  # original index kept for joining back


def test_pareto_objectives_maximize_and_groups():
    df = frame_for_pareto()
    assert list(yukti.pareto(df, objectives=("latency_p99_us",))["backend"]) == ["e"]
    assert list(yukti.pareto(df, objectives=("latency_p99_us",), ok_only=False)["backend"]) == ["g"]
    both = yukti.pareto(df, objectives=("latency_p99_us", "argmax_agreement"), maximize=("argmax_agreement",))
    assert sorted(both["backend"]) == ["a", "b", "e"]
    df["batch_size"] = [1, 1, 1, 64, 64, 64, 64]
    grouped = yukti.pareto(df, objectives=("latency_p99_us",), by="batch_size")
    assert list(zip(grouped["batch_size"], grouped["backend"])) == [(1, "a"), (64, "e")]
    with pytest.raises(yukti.UnknownNameError, match="memory_mb"):
        yukti.pareto(df, objectives=("memory_mb",))
    with pytest.raises(yukti.UnknownNameError, match="maximize"):
        yukti.pareto(df, objectives=("latency_p99_us",), maximize=("auc",))


def test_pareto_of_a_choice_matches_pareto_of_its_table(tmp_path, jet_dnn, fakes, no_measuring):
    store = store_of(tmp_path, [
        row(jet_dnn, "fake_a", latency_p99_us=1.0, argmax_agreement=0.9, prepare_s=1.0),
        row(jet_dnn, "fake_b", latency_p99_us=2.0, argmax_agreement=1.0, prepare_s=1.0),
        row(jet_dnn, "fake_c", latency_p99_us=3.0, argmax_agreement=1.0, prepare_s=2.0),  # dominated by b
    ])
    choice = yukti.choose(jet_dnn, backends=ABC, store=store)
    assert list(choice.pareto()["backend"]) == list(yukti.pareto(choice.table())["backend"]) == ["fake_a", "fake_b"]
    assert json.loads(choice.table().set_index("backend").loc["fake_a", "options"]) == {"threads": 1, "flavour": "plain"}
    assert not math.isnan(choice.table()["latency_p99_us"].iloc[0])
