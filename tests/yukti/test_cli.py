"""The yukti command line, run in-process and once through the installed script."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
    rows = json.loads(target.read_text())
    assert {(r["backend"], r["batch_size"]) for r in rows} == {("reference", 1), ("reference", 8), ("onnxruntime", 1), ("onnxruntime", 8)}
    assert all(r["status"] == "ok" and r["latency_p99_us"] >= r["latency_p50_us"] for r in rows)


def test_bench_csv_to_stdout(capsys, jet_dnn):
    assert main(["bench", "jet_dnn", "-b", "onnxruntime", "--batch", "2", "--time-budget", "0.02", "--min-calls", "5",
                 "--eval-samples", "100", "--csv", "-", "--quiet", "--no-store"]) == 0
    header = capsys.readouterr().out.splitlines()[0]
    assert header.startswith("run_id,model,model_hash,backend")


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
