"""dashboard.data and dashboard.charts without Streamlit: derived metrics, latest runs, Pareto
front, the plain chooser, step flags, efficiency curves, figures, the launcher's command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import APP_PATH, charts, data, launch

from dashboard_fixtures import make_history


def test_load_results_derives_losses_within_each_run(fixture_store: Path) -> None:
    frame = data.load_results()
    ok = frame[frame["status"] == "ok"]
    assert set(ok["run_id"]) == {"older000001", "latest00002"}
    cpp = ok[(ok["backend"] == "cpp")]
    assert cpp["accuracy_loss"].to_numpy() == pytest.approx([0.02] * 3)
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


def test_rank_applies_constraints_and_orders_by_p99(fixture_store: Path) -> None:
    frame = data.load_results()
    strict = data.rank(frame, "jet_dnn", batch_size=1, max_accuracy_loss=0.005)
    assert strict["backend"].tolist()[:3] == ["onnxruntime", "torch", "reference"]
    assert not strict.loc[strict["backend"] == "cpp", "meets"].item()
    assert "accuracy loss" in strict.loc[strict["backend"] == "cpp", "why_not"].item()
    loose = data.choose(frame, "jet_dnn", batch_size=1, max_accuracy_loss=0.05)
    assert loose.winner == "cpp"
    capped = data.choose(frame, "jet_dnn", batch_size=1, max_p99_us=0.5)
    assert capped.winner is None and not capped.table["meets"].any()
    only_torch = data.choose(frame, "jet_dnn", batch_size=1, max_accuracy_loss=0.005, backends=["torch", "reference"])
    assert only_torch.winner == "torch" and only_torch.winner_options == {"threads": 1}
    # the fixture was "measured" on another host with another model hash: yukti.choose cannot reuse
    # it, so the page ranks the stored rows and says why
    assert only_torch.source.startswith("stored") and "this host" in only_torch.note


def test_choose_uses_the_library_chooser_when_it_has_numbers(fixture_store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    import yukti

    seen: dict = {}
    winner = types.SimpleNamespace(backend="onnxruntime", options={"threads": 1}, measured=True)

    class FakeChoice(list):
        winner = None

        def table(self) -> pd.DataFrame:
            return pd.DataFrame({"backend": ["onnxruntime"], "meets": [True]})

    def fake_choose(model: str, **kwargs: object) -> FakeChoice:
        seen.update(kwargs, model=model)
        answer = FakeChoice([winner])
        answer.winner = winner
        return answer

    monkeypatch.setattr(yukti, "choose", fake_choose)
    frame = data.load_results()
    choice = data.choose(frame, "jet_dnn", batch_size=64, max_p99_us=100.0, max_accuracy_loss=0.01, backends=["onnxruntime"])
    assert choice.source == "yukti.choose" and choice.winner == "onnxruntime" and choice.winner_options == {"threads": 1}
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


def test_efficiency_curve_of_a_perfect_and_a_random_score() -> None:
    rng = np.random.default_rng(0)
    is_signal = rng.random(4000) < 0.3
    perfect = data.efficiency_curve(is_signal.astype(float), is_signal)
    assert perfect["sig_eff"].min() == pytest.approx(1.0)
    noise = data.efficiency_curve(rng.random(4000), is_signal)
    at_10pct = noise.loc[np.isclose(noise["bkg_eff"], 0.1), "sig_eff"].item()
    assert 0.05 < at_10pct < 0.15  # a random score passes signal at the background rate
    assert noise["bkg_eff"].is_monotonic_increasing and noise["sig_eff"].is_monotonic_increasing


def test_fidelity_curves_histogram_counts_every_nonzero_difference() -> None:
    rng = np.random.default_rng(1)
    ref = rng.random((500, 3))
    other = ref.copy()
    other[:100, 0] += 1e-6  # 100 outputs differ by 1e-6, the rest are equal
    labels = rng.integers(0, 3, 500)
    curves, hists, summary = data.fidelity_curves({"reference": ref, "other": other}, labels, signal_class=1)
    assert set(curves["backend"]) == {"reference", "other"}
    assert hists["count"].sum() == 100
    peak = hists.loc[hists["count"].idxmax(), "log10_abs_diff"]
    assert abs(peak - (-6)) <= 0.25
    row = summary.set_index("backend").loc["other"]
    assert row["exact_zero_fraction"] == pytest.approx(1 - 100 / 1500)


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
