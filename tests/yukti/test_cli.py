"""The yukti command line, run in-process and once through the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from yukti import roofline
from yukti.cli import main


def test_backends(capsys):
    assert main(["backends"]) == 0
    out = capsys.readouterr().out
    for name in ("reference", "onnxruntime", "torch"):
        assert name in out


def test_check_lists_support(capsys, jet_dnn):
    assert main(["check", "jet_dnn"]) == 0
    out = capsys.readouterr().out
    assert "Gemm" in out and "float32[batch, 16]" in out and "onnxruntime" in out


def test_bench_writes_json_and_prints_table(capsys, tmp_path, jet_dnn):
    target = tmp_path / "rows.json"
    code = main(["bench", "jet_dnn", "-b", "reference,onnxruntime", "--batch", "1", "8", "--time-budget", "0.05",
                 "--min-calls", "10", "--eval-samples", "500", "--json", str(target), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "p99 µs" in out and "onnxruntime" in out and "jets_synthetic (synthetic)" in out
    peak = roofline.host_peak_gflops(1)
    if peak.gflops is not None:  # the share's denominator is printed under the table
        assert "% peak" in out and "% peak: of" in out and "FLOP/cycle" in out
    rows = json.loads(target.read_text())
    assert {(r["backend"], r["batch_size"]) for r in rows} == {("reference", 1), ("reference", 8), ("onnxruntime", 1), ("onnxruntime", 8)}
    assert all(r["status"] == "ok" and r["latency_p99_us"] >= r["latency_p50_us"] for r in rows)


def test_bench_csv_to_stdout(capsys, jet_dnn):
    assert main(["bench", "jet_dnn", "-b", "onnxruntime", "--batch", "2", "--time-budget", "0.02", "--min-calls", "5",
                 "--eval-samples", "100", "--csv", "-", "--quiet", "--no-store"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("run_id,model,model_hash,backend")


def test_bench_passes_backend_options(capsys, tmp_path, jet_dnn):
    target = tmp_path / "rows.json"
    assert main(["bench", "jet_dnn", "-b", "fixed", "onnxruntime", "--batch", "1", "-o", "fixed.precision=ap_fixed<12,5,AP_RND,AP_SAT>",
                 "-o", "fixed.count_overflows=true", "-o", "onnxruntime.threads=1", "--time-budget", "0.02", "--min-calls", "5",
                 "--eval-samples", "300", "--json", str(target), "--quiet", "--no-store"]) == 0
    rows = {r["backend"]: r for r in json.loads(target.read_text())}
    fixed = rows["fixed"]["options"]
    fixed = json.loads(fixed) if isinstance(fixed, str) else fixed
    assert fixed["precision"] == "ap_fixed<12,5,AP_RND,AP_SAT>" and fixed["count_overflows"] is True  # JSON true -> bool
    assert rows["fixed"]["status"] == rows["onnxruntime"]["status"] == "ok"
    # a misspelt backend is refused, not silently measured with the defaults
    assert main(["bench", "jet_dnn", "-b", "fixed", "--batch", "1", "-o", "fxied.precision=ap_fixed<8,3>", "--quiet", "--no-store"]) == 2
    assert "fxied" in capsys.readouterr().out
    assert main(["bench", "jet_dnn", "-o", "precision"]) == 2
    captured = capsys.readouterr()
    assert "BACKEND.NAME=VALUE" in captured.err + captured.out


def test_results_shows_stored_runs(capsys, jet_dnn):
    main(["bench", "jet_dnn", "-b", "onnxruntime", "--batch", "1", "--time-budget", "0.02", "--min-calls", "5", "--eval-samples", "100", "--quiet"])
    capsys.readouterr()
    assert main(["results"]) == 0
    assert "onnxruntime" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "no_such_model"], "unknown model 'no_such_model'"),
        (["bench", "jet_dnn", "-b", "tensorrt"], "unknown backend 'tensorrt'"),
        (["check", "missing.onnx"], "no ONNX file"),
        (["bench", "jet_dnn", "--data", "nope"], "unknown dataset 'nope'"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(capsys, argv, message, jet_dnn):
    assert main(argv) == 2
    assert message in capsys.readouterr().out


def test_installed_script_runs():
    script = shutil.which("yukti", path=str(Path(sys.executable).parent))
    assert script, "the yukti console script is not installed"
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("backends", "check", "bench"):
        assert command in out


# -- yukti choose ---------------------------------------------------------------------------------

def _choose_store(monkeypatch, tmp_path, model, p99: dict[str, float]) -> None:
    """A results store holding one reusable batch-1 row per backend with the given p99 (µs)."""
    import pandas as pd

    from yukti import environment, registry, results
    from yukti.chooser import _requested_options

    rows = [{
        "run_id": "r", "model": model.name, "model_hash": model.hash, "backend": name, "status": "ok",
        "backend_version": registry.backend_info(name).version, "options": _requested_options(registry.runner_class(name), 1, {}),
        "batch_size": 1, "threads": 1, "dataset": model.data.label, "signal_class": model.data.signal_name, "n_samples": 100,
        "host": environment._static()["host"], "timestamp": pd.Timestamp.now(tz="UTC"), "latency_p50_us": value / 2,
        "latency_p99_us": value, "throughput_per_s": 2e6 / value, "argmax_agreement": 1.0, "auc": 0.9, "prepare_s": 0.1,
    } for name, value in p99.items()]
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "store"))
    results.append(pd.DataFrame(rows))


def test_choose_prints_the_ranked_table_and_exits_0_with_a_winner(capsys, monkeypatch, tmp_path, jet_dnn):
    _choose_store(monkeypatch, tmp_path, jet_dnn, {"onnxruntime": 4.0, "reference": 300.0})
    code = main(["choose", "jet_dnn", "--batch", "1", "--max-p99-us", "5", "--max-accuracy-drop", "0.005",
                 "-b", "onnxruntime,reference", "--measure", "never"])
    out = capsys.readouterr().out
    assert code == 0
    assert "WINNER" in out and "winner: onnxruntime (stored)" in out
    assert "reference: misses p99 latency 300 µs > 5 µs (over by 295 µs" in out
    assert out.index("onnxruntime") < out.index("reference")  # ranked
    assert "p99 latency ≤ 5 µs, accuracy drop ≤ 0.005" in out


def test_choose_exits_1_without_a_winner_and_says_why(capsys, monkeypatch, tmp_path, jet_dnn):
    _choose_store(monkeypatch, tmp_path, jet_dnn, {"onnxruntime": 40.0})
    code = main(["choose", "jet_dnn", "--max-p99-us", "5", "-b", "onnxruntime", "torch", "--measure", "never"])
    out = capsys.readouterr().out
    assert code == 1
    assert "no winner" in out and "WINNER" not in out
    assert "onnxruntime: misses p99 latency 40 µs > 5 µs (over by 35 µs" in out
    assert "torch: not measured" in out


def test_choose_measures_and_writes_json(capsys, monkeypatch, tmp_path, jet_dnn):
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "empty"))
    code = main(["choose", "jet_dnn", "-b", "onnxruntime", "--objective", "throughput", "--time-budget", "0.02",
                 "--min-calls", "5", "--eval-samples", "200", "--no-store", "--json", "-"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [(r["backend"], r["source"], r["meets"], r["rank"]) for r in rows] == [("onnxruntime", "measured", True, 1)]
    assert rows[0]["throughput_per_s"] > 0 and rows[0]["n_samples"] == 200
    assert not (tmp_path / "empty").exists()  # --no-store: nothing appended


def test_choose_rejects_an_unknown_backend(capsys, jet_dnn):
    assert main(["choose", "jet_dnn", "-b", "tensorrt", "--measure", "never"]) == 2
    assert "unknown backend 'tensorrt'" in capsys.readouterr().out


def test_dashboard_subcommand_passes_its_options_to_the_launcher(capsys, monkeypatch):
    import yukti.dashboard.launch  # noqa: F401 (the module the test patches)
    from yukti import dashboard

    seen = {}
    monkeypatch.setattr(dashboard.launch.subprocess, "call", lambda cmd: seen.setdefault("cmd", cmd) and 0)
    assert main(["dashboard", "--port", "8612", "--theme.base", "dark"]) == 0
    cmd = seen["cmd"]
    assert "streamlit" in cmd and "run" in cmd and str(dashboard.APP_PATH) in cmd
    assert cmd[cmd.index("--server.port") + 1] == "8612" and "--theme.base" in cmd


# -- exit codes, argument checks, a store that degrades -----------------------------------------------

QUICK_BENCH = ["--time-budget", "0.02", "--min-calls", "5", "--eval-samples", "100", "--quiet"]


COUNT, POSITIVE, LIMIT = "an integer >= 1", "a finite number > 0", "a number >= 0"
# A command line -> what its last option must be instead.
MEANINGLESS = {
    "bench --threads 0": COUNT, "bench --threads -2": COUNT, "bench --time-budget -1": POSITIVE,
    "bench --time-budget 0": POSITIVE, "bench --time-budget nan": POSITIVE, "bench --min-calls 0": COUNT,
    "bench --eval-samples 0": COUNT, "bench --batch 1 0": COUNT, "bench --batch 1.5": COUNT,
    "results --last -1": COUNT, "results --last 0": COUNT, "choose --threads 0": COUNT, "choose --batch 0": COUNT,
    "choose --max-p99-us -5": LIMIT, "choose --max-accuracy-drop nan": LIMIT, "choose --min-throughput -1": LIMIT,
    "choose --time-budget -1": POSITIVE,
}


@pytest.mark.parametrize("line", MEANINGLESS)
def test_meaningless_numbers_are_usage_errors(capsys, monkeypatch, tmp_path, line):
    argv = line.split()
    option = [word for word in argv if word.startswith("--")][-1]
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "store"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"argument {option}: must be {MEANINGLESS[line]}" in err
    assert not (tmp_path / "store").exists()  # refused before anything ran or was stored


def test_help_documents_the_exit_codes(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "exit codes:" in out
    for line in ("0  success", "1  choose only: no backend meets the constraints", "2  usage error", "3  internal error",
                 "4  bench only"):
        assert line in out
    for command, codes in [("bench", "0234"), ("choose", "0123"), ("results", "023"), ("check", "023")]:
        assert main([command, "--help"]) == 0
        help_text = capsys.readouterr().out
        listed = "".join(line.strip()[0] for line in help_text.split("exit codes:")[1].strip().splitlines())
        assert listed == codes, (command, help_text)


def test_an_unexpected_exception_exits_3_and_keeps_the_traceback(capsys, monkeypatch):
    from yukti import zoo

    def broken() -> dict:
        raise RuntimeError("zoo index exploded")

    monkeypatch.setattr(zoo, "describe", broken)
    assert main(["zoo"]) == 3
    out = capsys.readouterr().out
    assert "internal error: RuntimeError: zoo index exploded" in out
    saved = Path(out.split("traceback saved to ")[1].split()[0])
    assert "zoo index exploded" in saved.read_text() and "Traceback (most recent call last)" in saved.read_text()
    saved.unlink()
    assert main(["zoo", "--debug"]) == 3
    captured = capsys.readouterr()
    assert "Traceback (most recent call last)" in captured.err and "RuntimeError: zoo index exploded" in captured.err
    assert main(["--debug", "zoo"]) == 3
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_bench_with_a_failed_backend_exits_4_and_stores_the_run(capsys, monkeypatch, tmp_path, jet_dnn):
    import yukti
    from yukti import results

    class Exploding(yukti.Runner):
        name = "exploding_cli_test"

        def _prepare(self, model, **options):
            raise RuntimeError("the compiler exploded")

    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "store"))
    yukti.register(Exploding.name, Exploding)
    try:
        code = main(["bench", "jet_dnn", "-b", "onnxruntime", Exploding.name, "--batch", "1", *QUICK_BENCH])
    finally:
        yukti.unregister(Exploding.name)
    assert code == 4
    assert "the compiler exploded" in capsys.readouterr().out
    stored = results.load()
    assert dict(zip(stored.backend, stored.status)) == {"onnxruntime": "ok", Exploding.name: "error"}


def test_bench_verbose_logs_each_backend_as_it_is_stored(capsys, monkeypatch, tmp_path, jet_dnn):
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "store"))
    assert main(["bench", "jet_dnn", "-b", "reference", "onnxruntime", "--batch", "1", "2", *QUICK_BENCH, "-v"]) == 0
    err = capsys.readouterr().err.splitlines()
    events = [line.split()[1:3] for line in err if line.startswith("yukti: ")]
    assert events == [["measured", "reference"], ["stored", "reference"], ["measured", "onnxruntime"], ["stored", "onnxruntime"]]
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    assert out.count("run ") == 1 and "reference" in out and "onnxruntime" in out  # one run, one table


def _bad_files(folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "garbage.parquet").write_bytes(b"garbage")
    (folder / "empty.parquet").write_bytes(b"")
    return ["empty.parquet", "garbage.parquet"]


def test_results_counts_and_names_skipped_files(capsys, monkeypatch, tmp_path, jet_dnn):
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "store"))
    assert main(["bench", "jet_dnn", "-b", "onnxruntime", "--batch", "1", *QUICK_BENCH]) == 0
    names = _bad_files(tmp_path / "store")
    capsys.readouterr()
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable file(s)" in out
    assert all(f"{name}: not a readable Parquet file" in out for name in names)
    assert "onnxruntime" in out  # the good run still shows


def test_results_of_a_store_with_only_bad_files(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "store"))
    _bad_files(tmp_path / "store")
    assert main(["results"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 unreadable file(s)" in out and "no stored results yet" in out


def test_choose_keeps_working_with_bad_files_in_the_store(capsys, monkeypatch, tmp_path, jet_dnn):
    _choose_store(monkeypatch, tmp_path, jet_dnn, {"onnxruntime": 4.0})
    _bad_files(tmp_path / "store")
    code = main(["choose", "jet_dnn", "--max-p99-us", "5", "-b", "onnxruntime", "--measure", "never"])
    captured = capsys.readouterr()
    assert code == 0 and "winner: onnxruntime (stored)" in captured.out
    assert "warning: skipped" in captured.err and "garbage.parquet" in captured.err and "empty.parquet" in captured.err


def test_names_from_a_model_file_cannot_drive_the_terminal(tmp_path, capsys):
    """`yukti check` prints node names from the file: no escape sequence or rich markup gets through."""
    from hostile_names import hostile_dense_model

    payload = "\x1b]52;c;cHduZWQ=\x07\x1b[2J[bold red]MARKUP[/]\u202e"
    path = tmp_path / "evil.onnx"
    path.write_bytes(hostile_dense_model(payload).SerializeToString())
    assert main(["check", str(path)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "\\x1b]52" in out and "[bold red]MARKUP[/]" in out and "\\u202e" in out
