"""Every dashboard page under streamlit.testing.v1.AppTest on fixture results: no exception, the
expected widgets and charts, the right answers (Choose winner, flagged regression)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import yukti
from dashboard_fixtures import figures, open_page


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    """The first st.dataframe holding `columns` (AppTest does not expose a dataframe's key)."""
    for element in at.dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no table with columns {columns}")


def trace_names(figure: dict) -> list[str]:
    return [t.get("name") for t in figure["data"]]


def trace_values(trace: dict, axis: str) -> np.ndarray:
    """A trace's x or y: plotly sends numeric arrays as base64 typed arrays ({"dtype", "bdata"})."""
    import base64

    values = trace[axis]
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values, dtype=float)


def test_tradeoffs_page_draws_backends_and_names_the_front(fixture_store: Path) -> None:
    at = open_page("tradeoffs")
    assert at.sidebar.selectbox(key="tradeoffs_model").value == "jet_dnn"
    assert at.sidebar.selectbox(key="tradeoffs_batch").options == ["1", "64", "1024"]
    (fig,) = figures(at)
    assert {"reference", "onnxruntime", "torch", "cpp", "Pareto front"} <= set(trace_names(fig))
    assert fig["layout"]["xaxis"]["type"] == "log"
    front = next(t for t in fig["data"] if t["name"] == "Pareto front")
    # batch 1, p99 vs 1 - agreement: cpp (fastest, 2% loss) and onnxruntime (exact) are non-dominated
    assert sorted(front["text"]) == ["cpp", "onnxruntime"]
    assert any(m.value.endswith(": **cpp**, **onnxruntime**") for m in at.markdown)  # named, fastest first
    # the older run's "fast" torch must not appear: torch is dominated in the latest run
    assert "torch" not in front["text"]


def test_tradeoffs_page_switches_to_auc_drop(fixture_store: Path) -> None:
    at = open_page("tradeoffs")
    at.sidebar.radio(key="tradeoffs_loss").set_value("auc_drop").run()
    assert not at.exception
    (fig,) = figures(at)
    assert "AUC drop" in fig["layout"]["yaxis"]["title"]["text"]


def test_throughput_page_log_log_with_latency_on_hover(fixture_store: Path) -> None:
    at = open_page("throughput")
    tput, bars = figures(at)
    assert tput["layout"]["xaxis"]["type"] == "log" and tput["layout"]["yaxis"]["type"] == "log"
    assert set(trace_names(tput)) == {"reference", "onnxruntime", "torch", "cpp"}
    assert all("latency_p99_us" in t["hovertemplate"] for t in tput["data"])
    assert trace_names(bars) == ["p50", "p90", "p99"] and all(t["type"] == "bar" for t in bars["data"])
    at.sidebar.selectbox(key="throughput_batch").set_value(1024).run()
    assert not at.exception
    assert "batch 1024" in figures(at)[1]["layout"]["title"]["text"]


def test_history_page_flags_the_regression(fixture_store: Path, fake_asv: pd.DataFrame) -> None:
    at = open_page("history")
    assert at.sidebar.text_input(key="history_dir").value.endswith("results")
    (fig,) = figures(at)
    assert {"cpp", "onnxruntime", "regression"} <= set(trace_names(fig))
    flag_trace = next(t for t in fig["data"] if t["name"] == "regression")
    assert flag_trace["x"] == ["cccc3333"]
    # commits are categories in date order, even a hash of digits only (7319632 once made it numeric)
    assert fig["layout"]["xaxis"]["type"] == "category"
    assert len(fig["layout"]["xaxis"]["categoryarray"]) == fake_asv["commit_hash"].nunique()
    line = next(t for t in fig["data"] if t["name"] == "cpp")
    assert "commit_hash" in line["hovertemplate"] and "commit_date" in line["hovertemplate"]
    assert at.error and "1 step" in at.error[0].value
    # a threshold above the 50% jump flags nothing
    at.sidebar.slider(key="history_threshold").set_value(60).run()
    assert not at.exception and at.success and not at.error


def test_history_page_without_asv_results_says_how_to_record_them(fixture_store: Path, tmp_path: Path) -> None:
    from yukti import results

    if not hasattr(results, "from_asv"):
        pytest.skip("this yukti has no yukti.results.from_asv yet")
    at = open_page("history")
    at.sidebar.text_input(key="history_dir").set_value(str(tmp_path / "no-asv-here")).run()  # the real loader
    assert not at.exception and not figures(at)
    assert any("asv run" in i.value and "no-asv-here" in i.value for i in at.info)


@pytest.fixture(scope="module")
def benchmarked_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made by short real benchmarks: jet_dnn (classification, labelled synthetic jets) and a
    tiny dense regressor (random inputs), each stored with its fidelity curves."""
    import torch
    from torch import nn

    import yukti

    store = tmp_path_factory.mktemp("benchmarked")
    policy = yukti.TimingPolicy(time_budget_s=0.02, min_calls=5, warmup_calls=2, warmup_s=0.0)
    yukti.benchmark("jet_dnn", backends=["reference", "onnxruntime"], batch_sizes=(1,), policy=policy,
                    max_eval_samples=2000, store=str(store))
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    regressor = yukti.load(net, torch.zeros(1, 6), name="tiny_regressor")
    yukti.benchmark(regressor, backends=["reference", "onnxruntime"], batch_sizes=(1,), policy=policy,
                    max_eval_samples=2000, store=str(store))
    return store


@pytest.fixture
def no_backend_may_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to prepare or run a backend fails the page (AppTest runs it in this process)."""
    import yukti
    from yukti import registry

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the Fidelity page tried to run a backend")

    monkeypatch.setattr(yukti, "runner", refuse)
    monkeypatch.setattr(registry, "runner", refuse)
    monkeypatch.setattr(yukti.Runner, "prepare", refuse)


def test_fidelity_page_draws_the_stored_curves_without_running_a_backend(
        benchmarked_store: Path, monkeypatch: pytest.MonkeyPatch, no_backend_may_run: None) -> None:
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(benchmarked_store))
    at = open_page("fidelity")
    at.sidebar.selectbox(key="fidelity_model").set_value("jet_dnn").run()
    assert not at.exception and not at.warning and not at.info, [m.value for m in [*at.warning, *at.info]]
    roc, diffs = figures(at)
    assert set(trace_names(roc)) == {"reference", "onnxruntime"}
    assert roc["layout"]["xaxis"]["type"] == "log"
    assert set(trace_names(diffs)) == {"onnxruntime"}  # the reference is the yardstick
    summary = table_with(at, "label", "argmax_agreement", "auc").set_index("label")
    assert not {"max_rel_error", "resolution"} & set(summary.columns)  # a classifier's metrics only
    stored = yukti.results.load(benchmarked_store).query("model == 'jet_dnn'").groupby("backend").first()
    assert summary["auc"].to_dict() == pytest.approx(stored["auc"].to_dict())  # the stored numbers, not new ones
    # the curve drawn is the one measured: it passes through the stored efficiency at 1% background
    for trace in roc["data"]:
        at_1pct = np.interp(0.01, trace_values(trace, "x"), trace_values(trace, "y"))
        assert at_1pct == pytest.approx(stored.loc[trace["name"], "eff_at_bkg_1pct"], abs=1e-6)
    equal = table_with(at, "label", "exact_zero_fraction").set_index("label").loc["onnxruntime"]
    assert equal["n_values"] == 2000 * 5  # every output value of the evaluation samples was compared
    assert trace_values(diffs["data"][0], "y").sum() == equal["n_values"] - equal["n_equal"]  # each differing value is in the histogram
    at.sidebar.multiselect(key="fidelity_backends").set_value(["reference"]).run()
    assert not at.exception and len(figures(at)) == 1 and any("other than the reference" in i.value for i in at.info)


def test_fidelity_page_shows_a_regression_in_its_own_metrics(
        benchmarked_store: Path, monkeypatch: pytest.MonkeyPatch, no_backend_may_run: None) -> None:
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(benchmarked_store))
    at = open_page("fidelity")
    at.sidebar.selectbox(key="fidelity_model").set_value("tiny_regressor").run()
    assert not at.exception
    (diffs,) = figures(at)  # no efficiency curve: regression has no signal
    assert set(trace_names(diffs)) == {"onnxruntime"}
    summary = table_with(at, "label", "max_rel_error", "mean_rel_error", "resolution")
    assert not {"argmax_agreement", "auc"} & set(summary.columns)
    assert any("regression" in c.value for c in at.caption)


def test_fidelity_page_of_a_run_stored_without_curves_says_so(fixture_store: Path, no_backend_may_run: None) -> None:
    at = open_page("fidelity")  # the fixture runs were stored as older Yukti stored them: no curves file
    assert not figures(at)
    (message,) = [i.value for i in at.info]
    assert "without fidelity curves" in message and "yukti bench jet_dnn" in message
    summary = table_with(at, "label", "argmax_agreement", "max_abs_diff").set_index("label")
    assert summary.loc["cpp", "argmax_agreement"] == pytest.approx(0.98)  # its stored numbers are still shown


def test_choose_page_picks_the_right_backend(fixture_store: Path) -> None:
    at = open_page("choose")
    # default limit 0.5% accuracy loss: cpp (fastest, 2% loss in the fixture) is passed over
    assert "**onnxruntime**" in at.success[0].value
    assert "yukti.runner('onnxruntime', model, threads=1)" in at.code[0].value
    at.number_input(key="choose_max_loss").set_value(0.05).run()
    assert "**cpp**" in at.success[0].value
    at.number_input(key="choose_max_p99").set_value(1.0).run()  # below every p99 in the fixture
    assert not at.success and at.error and not at.code
    at.number_input(key="choose_max_p99").set_value(None).run()
    at.multiselect(key="choose_backends").set_value(["torch", "reference"]).run()
    assert "**torch**" in at.success[0].value
    at.selectbox(key="choose_batch").set_value(1024).run()
    assert not at.exception and "batch 1024" in at.success[0].value


def test_runs_page_filters_and_shows_the_environment(fixture_store: Path) -> None:
    at = open_page("runs")
    table = table_with(at, "run_id", "latency_p99_us")
    assert len(table) == 2 * 3 + 4 * 3 + 3  # older run, latest run, hls4ml "unavailable" rows
    at.multiselect(key="runs_status").set_value(["unavailable"]).run()
    assert set(table_with(at, "run_id", "latency_p99_us")["backend"]) == {"hls4ml"}
    assert at.get("download_button")
    at.selectbox(key="runs_fingerprint_run").set_value("older000001").run()
    fingerprint = json.loads(at.json[0].value)
    assert fingerprint["host"] == "fixturehost" and fingerprint["packages"]["yukti"] == "0.1.0"


def test_empty_store_offers_the_quick_benchmark(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "empty"))
    at = open_page("tradeoffs")
    assert any("yukti bench" in i.value for i in at.info)
    assert at.button(key="quick_bench") and not figures(at)


@pytest.mark.slow
def test_quick_benchmark_button_fills_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "quick"
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    at = open_page("throughput", timeout=600)
    at.multiselect(key="quick_backends").set_value(["reference", "onnxruntime"])
    at.button(key="quick_bench").click().run()
    assert not at.exception
    from yukti import curves

    stored = [p for p in store.glob("*.parquet") if not curves.is_curves_file(p)]
    assert len(stored) == 1  # one run, both backends
    frame = pd.read_parquet(stored[0])
    assert set(frame["backend"]) == {"reference", "onnxruntime"} and frame["run_id"].nunique() == 1
    assert set(curves.load(store, frame["run_id"].unique())["backend"]) == {"reference", "onnxruntime"}  # with its curves
    assert sorted(frame["batch_size"].unique()) == [1, 1024] and (frame["status"] == "ok").all()
    # after the rerun the page shows the new measurements
    at.run()
    assert set(trace_names(figures(at)[0])) == {"reference", "onnxruntime"}


def test_a_bad_store_file_is_named_in_the_sidebar_and_the_page_still_draws(fixture_store: Path) -> None:
    (fixture_store / "garbage.parquet").write_bytes(b"not parquet")
    at = open_page("tradeoffs")
    assert any("garbage.parquet" in w.value and "1 unreadable" in w.value for w in at.sidebar.warning)
    assert figures(at)  # the good runs are still drawn
