"""The asv suite (benchmarks/backends.py, asv.conf.json): its structure, its skip/fail rules, and
one real quick asv run on the current commit loaded back through yukti.results.from_asv."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from yukti import results

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "backends.py"


def _load_suite(monkeypatch: pytest.MonkeyPatch | None = None, **env: str) -> ModuleType:
    """The suite module loaded from its file (it is not an installed package)."""
    for key, value in env.items():
        assert monkeypatch is not None
        monkeypatch.setenv(key, value)
    spec = importlib.util.spec_from_file_location("yukti_asv_suite_under_test", SUITE)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def _benchmark_classes(suite: ModuleType) -> list[type]:
    return [cls for _, cls in inspect.getmembers(suite, inspect.isclass)
            if cls.__module__ == suite.__name__ and not cls.__name__.startswith("_")]


def test_suite_is_written_the_asv_way() -> None:
    suite = _load_suite()
    classes = _benchmark_classes(suite)
    assert {c.__name__ for c in classes} >= {"Latency", "NativeLatency", "Accuracy", "Build", "ArtifactSize", "Call", "PrepareMemory"}
    kinds = set()
    # every class but the kernel sweep measures models x backends through the one engine run
    assert {c.__name__ for c in classes if not issubclass(c, suite._EngineRun)} == {"KernelSweep"}
    for cls in classes:
        assert len(cls.params) == len(cls.param_names), cls
        assert cls.version == suite.SUITE_VERSION  # pinned: editing the suite keeps the history
        if cls is not suite.KernelSweep:
            assert cls.param_names[:2] == ["model", "backend"], cls
            assert cls.setup_cache is suite._EngineRun.setup_cache  # one shared engine run per asv run
        for name, function in inspect.getmembers(cls, inspect.isfunction):
            kind = name.split("_", 1)[0]
            if kind in ("time", "track", "peakmem"):
                kinds.add(kind)
                # benchmark functions take (self, cache, *params), as asv calls them
                assert len(inspect.signature(function).parameters) == 2 + len(cls.params), name
            if kind == "track":
                assert getattr(function, "unit", ""), f"{cls.__name__}.{name} has no unit"
    assert kinds == {"time", "track", "peakmem"}
    # every backend Yukti itself registers is in the (fixed) parameter list
    from importlib.metadata import entry_points

    built_in = {ep.name for ep in entry_points(group="yukti.runners") if ep.dist is not None and ep.dist.name == "yukti"}
    assert built_in and built_in <= set(suite.BACKENDS)


def test_parameters_do_not_depend_on_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # asv discovers the parameters once and runs combinations by index in each commit's
    # environment, so they must come from the suite (or the explicit environment variables) only.
    default = _load_suite()
    assert default.BACKENDS[:4] == ("reference", "onnxruntime", "torch", "cpp")
    narrowed = _load_suite(monkeypatch, YUKTI_ASV_MODELS="jet_dnn", YUKTI_ASV_BACKENDS="cpp, onnxruntime", YUKTI_ASV_BATCHES="8")
    assert narrowed.MODELS == ("jet_dnn",)
    assert narrowed.BACKENDS == ("cpp", "onnxruntime")
    assert narrowed.Latency.params == [["jet_dnn"], ["cpp", "onnxruntime"], [8]]
    assert narrowed.Accuracy.params == [["jet_dnn"], ["cpp", "onnxruntime"]]


def _cache() -> dict:
    ok = {"status": "ok", "backend": "cpp", "model": "m", "prepare_s": 0.5, "latency_p50_us": 2.0,
          "argmax_agreement": 0.99, "auc": 0.9, "latency_native_p50_us": None, "artifact_bytes": None}
    return {
        "records": {
            ("m", "cpp", 1): ok,
            ("m", "cpp", 64): {**ok, "status": "error", "error": "boom at 64", "latency_p50_us": None},
            ("m", "reference", 1): {**ok, "backend": "reference", "auc": 0.95},
            ("m", "torch", 1): {"status": "unsupported", "error": "no Conv", "backend": "torch"},
            ("m", "ort", 1): {"status": "error", "error": "prepare failed", "backend": "ort", "prepare_s": None},
        },
        "refused": {"keras": "backend 'keras' is not available: no tensorflow"},
        "models": {"gone": "model 'gone' is not in this commit's zoo"},
        "artifacts": {}, "zoo_cache": "",
    }


def test_skip_and_failure_rules() -> None:
    suite = _load_suite()
    cache, record = _cache(), suite._EngineRun.record
    assert record(cache, "m", "cpp", 1)["latency_p50_us"] == 2.0
    for model, backend, batch, why in [("m", "keras", 1, "no tensorflow"), ("gone", "cpp", 1, "not in this commit's zoo"),
                                       ("m", "torch", 1, "no Conv"), ("m", "reference", 1024, "not timed at batch 1024")]:
        with pytest.raises(NotImplementedError, match=why):  # asv records a skip
            record(cache, model, backend, batch)
    with pytest.raises(RuntimeError, match="boom at 64"):  # asv records a failure
        record(cache, "m", "cpp", 64)
    with pytest.raises(RuntimeError, match="prepare failed"):
        record(cache, "m", "ort")
    # per-backend metrics come from a successful row even when another batch failed
    assert record(cache, "m", "cpp")["status"] == "ok"

    accuracy = suite.Accuracy()
    accuracy.setup(cache, "m", "cpp")
    assert accuracy.track_accuracy_drop(cache, "m", "cpp") == pytest.approx(0.01)
    assert accuracy.track_auc_loss(cache, "m", "cpp") == pytest.approx(0.1)
    assert accuracy.track_auc_drop(cache, "m", "cpp") == pytest.approx(0.05)
    # an engine with the vocabulary derives the losses itself: they are taken as they are
    derived = {**cache["records"][("m", "cpp", 1)], "accuracy_drop": 0.25, "auc_drop": 0.125}
    accuracy.row = derived
    assert accuracy.track_accuracy_drop(cache, "m", "cpp") == 0.25 and accuracy.track_auc_drop(cache, "m", "cpp") == 0.125
    from yukti import vocabulary

    assert suite.Accuracy.track_accuracy_drop.unit == vocabulary.METRICS["accuracy_drop"].unit  # units: the vocabulary's
    assert suite.Latency.track_throughput_per_s.unit == vocabulary.METRICS["throughput_per_s"].unit
    native = suite.NativeLatency()
    with pytest.raises(NotImplementedError, match="does not time itself"):
        native.setup(cache, "m", "cpp", 1)
    with pytest.raises(NotImplementedError, match="no artifact"):
        suite.ArtifactSize().setup(cache, "m", "cpp")


def _asv(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run([sys.executable, "-m", "asv", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"asv {' '.join(args)} failed ({done.returncode}):\n{output[-4000:]}"
    return output


@pytest.mark.slow
def test_asv_check_and_quick_run_load_into_the_schema(tmp_path: Path) -> None:
    asv_util = pytest.importorskip("asv.util")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout: asv needs commits")
    commit = head.stdout.strip()
    commit_time = int(subprocess.run(["git", "log", "-1", "--format=%ct", commit], cwd=ROOT,
                                     capture_output=True, text=True, check=True).stdout)

    # The project's own configuration, with every output redirected into tmp_path.
    conf = asv_util.load_json(str(ROOT / "asv.conf.json"), js_comments=True)
    conf.update(repo=str(ROOT), benchmark_dir=str(ROOT / "benchmarks"), results_dir=str(tmp_path / "results"),
                html_dir=str(tmp_path / "html"), env_dir=str(tmp_path / "env"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    env = {**os.environ, "HOME": str(tmp_path),  # asv keeps its machine file in $HOME
           # A tiny slice of the suite: one model, two backends and one that is not registered
           # (skipped the asv way), batch 1, a short engine budget.
           "YUKTI_ASV_MODELS": "jet_dnn", "YUKTI_ASV_BACKENDS": "onnxruntime,cpp,no_such_backend",
           "YUKTI_ASV_BATCHES": "1", "YUKTI_ASV_TIME_BUDGET": "0.05",
           # the kernel sweep narrowed to 2 x 2 layers at one batch
           "YUKTI_ASV_KERNEL_SIZES": "16,77", "YUKTI_ASV_KERNEL_BATCHES": "64", "YUKTI_ASV_KERNEL_BUDGET": "0.02",
           "YUKTI_ASV_CACHE": os.environ.get("YUKTI_CACHE_DIR") or str(tmp_path / "yukti-cache")}
    env.pop("PYTHONPATH", None)  # asv drops it for benchmarks anyway; keep asv's own imports clean

    _asv(["machine", "--yes", "--machine", "yukti-test"], tmp_path, env, 60)
    assert "No problems found" in _asv(["check", "--python=same"], tmp_path, env, 120)
    selection = (r"Latency\.track_latency_p50_us|Accuracy\.track_accuracy_drop|Build\.track_prepare_s|Call\.time_call|NativeLatency"
                 r"|Roofline|PeakShare|KernelSweep")
    _asv(["run", "--python=same", "--quick", "--set-commit-hash", commit, "--machine", "yukti-test", "-b", selection],
         tmp_path, env, 240)

    frame = results.from_asv(tmp_path / "results", machine="yukti-test")
    assert list(frame.columns[: len(results.COLUMNS)]) == results.COLUMNS
    assert sorted(frame["backend"]) == ["cpp", "onnxruntime"]  # no row for the skipped backend
    assert set(frame["model"]) == {"jet_dnn"} and set(frame["batch_size"]) == {1}
    assert set(frame["commit_hash"]) == {commit} and set(frame["git_commit"]) == {commit}
    assert set(frame["commit_date"]) == {pd.Timestamp(commit_time, unit="s", tz="UTC")}
    assert set(frame["status"]) == {"ok"}, frame["error"].tolist()
    for column in ("latency_p50_us", "time_call_us", "prepare_s", "argmax_agreement", "accuracy_drop"):
        assert pd.api.types.is_float_dtype(frame[column]), column
        assert frame[column].notna().all(), column
    assert (frame["latency_p50_us"] > 0).all() and (frame["time_call_us"] > 0).all() and (frame["prepare_s"] > 0).all()
    assert ((frame["argmax_agreement"] >= 0) & (frame["argmax_agreement"] <= 1)).all()
    assert (frame["argmax_agreement"] + frame["accuracy_drop"]).round(12).eq(1).all()
    by_backend = frame.set_index("backend")
    assert by_backend.loc["cpp", "latency_native_p50_us"] > 0  # cpp times itself natively
    assert pd.isna(by_backend.loc["onnxruntime", "latency_native_p50_us"])  # ORT does not: skipped

    # The skip was recorded as asv records skips (NaN), not dropped from the results.
    from asv.results import iter_results

    [result] = list(iter_results(str(tmp_path / "results" / "yukti-test")))
    name = "backends.Latency.track_latency_p50_us"
    params = result.get_result_params(name)
    values = dict(zip([p[1] for p in itertools.product(*params)], result.get_result_value(name, params)))
    assert values["'no_such_backend'"] != values["'no_such_backend'"]  # NaN: skipped
    assert values["'cpp'"] > 0

    # the roofline numbers came back as metric columns; the kernel sweep is not a model x backend row.
    # asv measures the installed yukti: `make test` installs this tree, a bare pytest run may find an
    # older install, which skips them the asv way, as an older commit does.
    installed = subprocess.run([sys.executable, "-c", "import yukti.roofline"], cwd=tmp_path, env=env,
                               capture_output=True).returncode == 0
    if installed:
        assert (frame["gflops"] > 0).all() and (frame["pct_of_peak"] > 0).all()
    else:
        assert frame["gflops"].isna().all() and frame["pct_of_peak"].isna().all()
    assert "ratio" not in frame.columns
    name = "backends.KernelSweep.track_ratio"
    params = result.get_result_params(name)
    ratios = dict(zip(itertools.product(*params), result.get_result_value(name, params)))
    assert sorted(ratios) == [(k, n, "64") for k in ("16", "77") for n in ("16", "77")]
    assert all(r is not None and r > 0 for r in ratios.values()), ratios


def test_roofline_benchmarks_track_the_engine_rates_or_skip() -> None:
    suite = _load_suite()
    cache = _cache()
    cache["records"][("m", "cpp", 1)] = {**cache["records"][("m", "cpp", 1)], "gflops": 12.5, "pct_of_peak": 7.5}
    rate, share = suite.Roofline(), suite.PeakShare()
    rate.setup(cache, "m", "cpp", 1)
    share.setup(cache, "m", "cpp", 1)
    assert rate.track_gflops(cache, "m", "cpp", 1) == 12.5 and share.track_pct_of_peak(cache, "m", "cpp", 1) == 7.5
    from yukti import vocabulary

    assert suite.Roofline.track_gflops.unit == vocabulary.METRICS["gflops"].unit == "GFLOP/s"
    assert suite.PeakShare.track_pct_of_peak.unit == vocabulary.METRICS["pct_of_peak"].unit == "%"
    # an engine row without a FLOP count (older commit, unreadable graph) is a skip, not a failure
    with pytest.raises(NotImplementedError, match="no FLOP count"):
        suite.Roofline().setup(cache, "m", "reference", 1)
    with pytest.raises(NotImplementedError, match="no share of peak"):
        suite.PeakShare().setup(cache, "m", "reference", 1)


def test_kernel_sweep_parameters_and_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    suite = _load_suite()
    sweep = suite.KernelSweep
    assert sweep.param_names == ["K", "N", "batch"]
    assert sweep.params == [[3, 10, 16, 32, 64, 77, 128, 256]] * 2 + [[1, 64, 1024]]
    assert sweep.track_ratio.unit == "cpp/onnxruntime"
    # its own setup_cache: a separate function (asv keys it by line), not the engine run
    assert sweep.setup_cache is not suite._EngineRun.setup_cache
    module = suite._kernel_sweep_module()  # the script's grid is the suite's
    assert tuple(sweep.params[0]) == module.SIZES and tuple(sweep.params[2]) == module.BATCHES
    narrowed = _load_suite(monkeypatch, YUKTI_ASV_KERNEL_SIZES="16,77", YUKTI_ASV_KERNEL_BATCHES="64")
    assert narrowed.KernelSweep.params == [[16, 77], [16, 77], [64]]

    cache = {"refused": None, "cells": {(16, 77, 64): {"ratio": 0.5, "status": "ok", "error": None},
                                        (77, 16, 64): {"ratio": None, "status": "error", "error": "cpp: error: boom"}}}
    bench = sweep()
    bench.setup(cache, 16, 77, 64)
    assert bench.track_ratio(cache, 16, 77, 64) == 0.5
    with pytest.raises(RuntimeError, match="boom"):  # asv: failed
        sweep().setup(cache, 77, 16, 64)
    with pytest.raises(NotImplementedError, match="not in this run's sweep"):  # asv: skipped
        sweep().setup(cache, 3, 3, 1)
    with pytest.raises(NotImplementedError, match="needs cpp"):
        sweep().setup({"refused": "the kernel sweep needs cpp and onnxruntime (cpp: no compiler)", "cells": {}}, 16, 77, 64)
