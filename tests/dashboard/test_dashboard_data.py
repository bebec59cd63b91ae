"""dashboard.data and dashboard.charts without Streamlit: derived metrics, latest runs, Pareto
front, the plain chooser, step flags, stored fidelity curves, figures, the launcher's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

import yukti
from yukti.dashboard import APP_PATH, charts, data, launch

from dashboard_fixtures import make_history
from fixture_curves import store_curves


def test_load_results_derives_losses_within_each_run(fixture_store: Path) -> None:
    frame = data.load_results()
    ok = frame[frame["status"] == "ok"]
    assert set(ok["run_id"]) == {"older000001", "latest00002"}
    cpp = ok[(ok["backend"] == "cpp")]
    assert cpp["accuracy_drop"].to_numpy() == pytest.approx([0.02] * 3)
    # AUC drop is against the reference of the same run: 0.980 - 0.970
    assert cpp["auc_drop"].to_numpy() == pytest.approx([0.01] * 3)
    assert ok.loc[ok["backend"] == "reference", "auc_drop"].to_numpy() == pytest.approx([0.0] * 6)


def test_store_fingerprint_changes_when_a_run_is_added(fixture_store: Path) -> None:
    from dashboard_fixtures import LATEST, make_run
    from yukti import results

    before = data.store_fingerprint(fixture_store)
    assert len(before) == 2
    results.append(make_run("third", LATEST, "2025-03-01T00:00:00Z"), fixture_store)
    assert data.store_fingerprint(fixture_store) != before
    assert data.store_fingerprint(fixture_store.parent / "missing") == ()


def test_latest_keeps_the_newest_run_per_configuration(fixture_store: Path) -> None:
    rows = data.latest(data.load_results())
    assert len(rows) == 4 * 3  # 4 backends x 3 batch sizes; hls4ml was unavailable
    torch = rows[(rows["backend"] == "torch") & (rows["batch_size"] == 1)]
    assert torch["run_id"].tolist() == ["latest00002"]
    assert set(rows["label"]) == {"reference", "onnxruntime", "torch", "cpp"}


def test_labels_name_the_option_that_differs() -> None:
    frame = pd.DataFrame({"backend": ["hls4ml", "hls4ml", "cpp"],
                          "options": [json.dumps({"precision": "ap_fixed<16,6>", "io": "parallel"}),
                                      json.dumps({"precision": "ap_fixed<8,3>", "io": "parallel"}), "{}"]})
    labels = data.with_labels(frame)["label"].tolist()
    assert labels == ["hls4ml [precision=ap_fixed<16,6>]", "hls4ml [precision=ap_fixed<8,3>]", "cpp"]


def test_pareto_is_the_library_front() -> None:
    frame = pd.DataFrame({"label": list("abcde"), "lat": [1.0, 2.0, 3.0, 2.5, 1.0], "status": "ok",
                          "loss": [0.02, 0.0, 0.0, 0.01, 0.03]})
    # a: fastest among equals; b: exact and faster than c; d dominated by b; e dominated by a
    assert sorted(data.pareto(frame, ["lat", "loss"])["label"]) == ["a", "b"]


def test_choose_ranks_stored_rows_through_the_library_chooser(fixture_store: Path) -> None:
    frame = data.load_results()
    strict, note = data.choose(frame, "jet_dnn", batch_size=1, max_accuracy_drop=0.005)
    assert isinstance(strict, yukti.Choice)  # one chooser: the library's, no second one here
    assert [c.backend for c in strict][:3] == ["onnxruntime", "torch", "reference"]
    assert not strict.get("cpp").meets
    assert "accuracy drop" in strict.get("cpp").verdict()
    # the fixture was "measured" on another host with another model hash: yukti.choose cannot reuse
    # it, so the stored rows are ranked as they are, and the note says why
    assert "this host" in note
    loose, _ = data.choose(frame, "jet_dnn", batch_size=1, max_accuracy_drop=0.05)
    assert loose.winner.backend == "cpp"
    capped, _ = data.choose(frame, "jet_dnn", batch_size=1, max_p99_us=0.5)
    assert capped.winner is None and not capped.table()["meets"].any()
    only_torch, _ = data.choose(frame, "jet_dnn", batch_size=1, max_accuracy_drop=0.005, backends=["torch", "reference"])
    assert only_torch.winner.backend == "torch" and only_torch.winner.options == {"threads": 1}
    assert only_torch.get("torch").source == "stored" and only_torch.get("torch").run_id == "latest00002"


def test_choose_uses_the_library_chooser_when_it_has_numbers(fixture_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: dict = {}
    winner = types.SimpleNamespace(backend="onnxruntime", options={"threads": 1}, measured=True)

    class FakeChoice(list):
        winner = None

    def fake_choose(model: str, **kwargs: object) -> FakeChoice:
        seen.update(kwargs, model=model)
        answer = FakeChoice([winner])
        answer.winner = winner
        return answer

    monkeypatch.setattr(yukti, "choose", fake_choose)
    frame = data.load_results()
    choice, note = data.choose(frame, "jet_dnn", batch_size=64, max_p99_us=100.0, max_accuracy_drop=0.01, backends=["onnxruntime"])
    assert isinstance(choice, FakeChoice) and choice.winner is winner and note == ""
    assert seen["measure"] == "never" and seen["stored"] is frame and seen["batch_size"] == 64
    assert seen["max_p99_us"] == 100.0 and seen["max_accuracy_drop"] == 0.01 and seen["backends"] == ["onnxruntime"]


def test_flag_steps_marks_only_the_regression() -> None:
    history = data.with_derived(make_history(), group=("commit_hash", "model", "batch_size"))
    series = data.history_series(history, "jet_dnn", 1, "latency_p99_us")
    flags = data.flag_steps(series, "latency_p99_us", threshold=0.10)
    assert flags["label"].tolist() == ["cpp"]
    assert flags["commit"].tolist() == ["cccc3333"] and flags["previous_commit"].tolist() == ["bbbb2222"]
    assert flags["change"].item() == pytest.approx(0.5)
    # throughput is higher-is-better: the same step shows as a drop there
    tput = data.flag_steps(data.history_series(history, "jet_dnn", 1, "throughput_per_s"), "throughput_per_s", 0.10)
    assert tput["label"].tolist() == ["cpp"] and tput["change"].item() < 0
    assert data.flag_steps(series, "latency_p99_us", threshold=0.60).empty


def test_load_curves_reads_the_runs_curves_with_the_rows_labels(fixture_store: Path) -> None:
    store_curves(fixture_store, "latest00002")
    frame = data.load_results()
    rows = data.run_fidelity(frame, "latest00002", "jet_dnn")
    assert sorted(rows["label"]) == ["cpp", "onnxruntime", "reference", "torch"]  # one row per configuration
    stored = data.load_curves(rows[rows["backend"] != "torch"])
    assert set(stored["label"]) == {"reference", "onnxruntime", "cpp"}  # torch had no curves stored
    assert set(data.load_curves("latest00002")["backend"]) == {"reference", "onnxruntime", "cpp"}
    lines = data.efficiency_lines(stored)
    assert set(lines["label"]) == {"reference", "onnxruntime", "cpp"} and lines["bkg_eff"].between(0, 1).all()
    hist, equal = data.difference_histogram(stored)
    counts = hist.groupby("label")["count"].sum()
    assert counts.to_dict() == {"cpp": 10, "onnxruntime": 100}
    peaks = hist.loc[hist.groupby("label")["count"].idxmax()].set_index("label")["log10_abs_diff"]
    assert peaks["onnxruntime"] == pytest.approx(-6, abs=0.25) and peaks["cpp"] == pytest.approx(-3, abs=0.25)
    assert hist["log10_abs_diff"].between(-6.75, -2.25).all()  # cropped to where the differences are
    assert equal.set_index("label")["exact_zero_fraction"].to_dict() == pytest.approx({"cpp": 1 - 10 / 2500, "onnxruntime": 1 - 100 / 2500})


def test_a_run_without_curves_or_with_a_broken_file_has_none(fixture_store: Path) -> None:
    from yukti import curves

    frame = data.load_results()
    older = data.run_fidelity(frame, "older000001", "jet_dnn")
    assert data.load_curves(older).empty and list(data.load_curves(older).columns)[:len(curves.COLUMNS)] == curves.COLUMNS
    store_curves(fixture_store, "latest00002")
    (path,) = fixture_store.glob(f"*{curves.SUFFIX}")
    path.write_bytes(b"\x00" * 32)
    assert data.load_curves(data.run_fidelity(frame, "latest00002", "jet_dnn")).empty


def test_fidelity_runs_newest_first_and_task_metrics() -> None:
    from dashboard_fixtures import LATEST, OLDER, make_run

    frame = data.with_derived(pd.concat([make_run("older000001", OLDER, "2025-01-01T10:00:00Z"),
                                         make_run("latest00002", LATEST, "2025-02-01T10:00:00Z")], ignore_index=True))
    runs = data.fidelity_runs(frame, "jet_dnn")
    assert runs["run_id"].tolist() == ["latest00002", "older000001"]
    assert runs["backends"].tolist() == ["cpp, onnxruntime, reference, torch", "reference, torch"]
    assert data.fidelity_runs(frame, "no such model").empty
    classification = data.fidelity_metrics("classification")
    assert {"argmax_agreement", "auc", "eff_at_bkg_1pct"} <= set(classification)
    assert not {"max_rel_error", "resolution", "score_rel_error"} & set(classification)
    regression = data.fidelity_metrics("regression")
    assert regression[:2] == ["max_abs_diff", "mean_abs_diff"]
    assert {"max_rel_error", "mean_rel_error", "resolution"} <= set(regression) and not {"auc", "argmax_agreement"} & set(regression)
    anomaly = data.fidelity_metrics("anomaly")
    assert {"auc", "eff_at_bkg_1pct", "score_rel_error", "mean_rel_error"} <= set(anomaly) and "argmax_agreement" not in anomaly
    assert data.fidelity_metrics(None) == classification  # runs stored before tasks existed were classifiers


def test_metric_chart_builds_one_trace_per_label_with_log_axes() -> None:
    frame = pd.DataFrame({"batch_size": [1, 64, 1, 64], "throughput_per_s": [1e3, 5e4, 2e3, 1e5],
                          "label": ["a", "a", "b", "b"], "latency_p50_us": [1.0, 2.0, 3.0, 4.0]})
    fig = charts.metric_chart(frame, "batch_size", "throughput_per_s", log_x=True, log_y=True, hover=["latency_p50_us"])
    assert [t.name for t in fig.data] == ["a", "b"]
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert "latency_p50_us" in fig.data[0].hovertemplate
    bars = charts.metric_chart(frame, "label", "latency_p50_us", color="batch_size", kind="bar")
    assert all(t.type == "bar" for t in bars.data)
    front = pd.DataFrame({"lat": [1.0], "loss": [0.0], "label": ["a"]})
    charts.add_pareto_front(fig, front, "lat", "loss")
    assert fig.data[-1].name == "Pareto front" and list(fig.data[-1].text) == ["a"]


def test_snippet_runs_the_winner_with_its_options() -> None:
    code = data.snippet("jet_dnn", "onnxruntime", json.dumps({"threads": 2}), batch_size=4)
    assert "yukti.zoo.get('jet_dnn')" in code and "yukti.runner('onnxruntime', model, threads=2)" in code
    compile(code, "snippet", "exec")
    assert "yukti.load('mymodel.onnx')" in data.snippet("mymodel", "cpp")


def test_default_asv_results_dir_reads_asv_conf(tmp_path: Path) -> None:
    assert data.default_asv_results_dir(tmp_path) == (tmp_path / ".asv" / "results").resolve()
    (tmp_path / "asv.conf.json").write_text('{\n// comment\n"version": 1, "results_dir": "out/asv"}')
    assert data.default_asv_results_dir(tmp_path) == (tmp_path / "out" / "asv").resolve()


def test_launch_builds_a_headless_streamlit_command(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    monkeypatch.setattr(launch.subprocess, "call", lambda cmd: seen.append(cmd) or 0)
    assert launch.main(["--port", "8600", "--theme.base", "dark"]) == 0
    cmd = seen[0]
    assert cmd[:5] == [sys.executable, "-m", "streamlit", "run", str(APP_PATH)]
    assert cmd[cmd.index("--server.port") + 1] == "8600"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    assert cmd[-2:] == ["--theme.base", "dark"]
    assert Path(cmd[4]).is_file()
