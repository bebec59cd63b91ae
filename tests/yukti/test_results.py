"""yukti.results: the schema and the Parquet-folder results store."""

from __future__ import annotations

import json
import os
import types
import uuid
from pathlib import Path

import pandas as pd
import pytest

from yukti import results
from yukti.results import COLUMNS


def _run(run_id: str, n: int = 2, **extra: object) -> pd.DataFrame:
    rows = []
    for i in range(n):
        rows.append({
            "run_id": run_id, "model": "jet_dnn", "backend": f"backend{i}", "status": "ok",
            "batch_size": 2**i, "latency_p50_us": 10.0 + i, "throughput_per_s": 1000.0 * (i + 1),
            "options": {"threads": i + 1, "mode": "fast"},
            "packages": {"numpy": "2.0", "yukti": "0.1.0"},
            "host": "testhost", "cpu": "Test CPU", "cpu_cores": 4, "python": "3.12.0", "platform": "Linux-test",
            "git_commit": "abc123", "timestamp": pd.Timestamp("2024-01-02T03:04:05Z") + pd.Timedelta(seconds=i),
            **extra,
        })
    return pd.DataFrame(rows)


def _files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_append_then_load_round_trips(tmp_path: Path) -> None:
    run = _run("r1")
    path = results.append(run, tmp_path)
    assert path.parent == tmp_path and path.suffix == ".parquet" and path.is_file()
    loaded = results.load(tmp_path)
    assert len(loaded) == len(run)
    assert list(loaded.columns[: len(COLUMNS)]) == COLUMNS
    assert list(loaded["run_id"]) == ["r1", "r1"]
    assert list(loaded["backend"]) == list(run["backend"])
    assert list(loaded["batch_size"]) == list(run["batch_size"])
    assert list(loaded["latency_p50_us"]) == pytest.approx(list(run["latency_p50_us"]))
    # nested dicts are stored as JSON text and read back as such
    for stored, original in zip(loaded["options"], run["options"]):
        assert isinstance(stored, str)
        assert json.loads(stored) == original
    assert json.loads(loaded["packages"].iloc[0]) == run["packages"].iloc[0]
    assert str(loaded["timestamp"].dt.tz) == "UTC"
    assert list(loaded["timestamp"]) == list(run["timestamp"])
    # schema columns the run did not fill are present and empty
    assert loaded["auc"].isna().all()
    assert loaded["error"].isna().all()


def test_default_store_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "env-store"
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    assert results.default_store() == store
    path = results.append(_run("env"))
    assert path.parent == store
    assert list(results.load()["run_id"]) == ["env", "env"]


def test_two_appends_concatenate(tmp_path: Path) -> None:
    results.append(_run("first", n=2), tmp_path)
    results.append(_run("second", n=3), tmp_path)
    assert len([f for f in _files(tmp_path) if f.endswith(".parquet")]) == 2
    loaded = results.load(tmp_path)
    assert len(loaded) == 5
    assert sorted(loaded["run_id"].value_counts().items()) == [("first", 2), ("second", 3)]
    assert loaded.index.tolist() == list(range(5))


def test_later_run_with_extra_column_loads_union(tmp_path: Path) -> None:
    results.append(_run("old", n=2), tmp_path)
    results.append(_run("new", n=2, new_metric=7.5), tmp_path)
    loaded = results.load(tmp_path)
    assert "new_metric" in loaded.columns
    assert list(loaded.columns[: len(COLUMNS)]) == COLUMNS  # extras come after the schema
    assert list(loaded.columns[len(COLUMNS):]) == ["new_metric", *results.DERIVED_COLUMNS]  # derived metrics come last
    old = loaded[loaded["run_id"] == "old"]
    new = loaded[loaded["run_id"] == "new"]
    assert len(old) == 2 and len(new) == 2
    assert old["new_metric"].isna().all()
    assert list(new["new_metric"]) == [7.5, 7.5]


@pytest.mark.parametrize("make_folder", [False, True])
def test_empty_or_missing_store(tmp_path: Path, make_folder: bool) -> None:
    store = tmp_path / "store"
    if make_folder:
        store.mkdir()
    loaded = results.load(store)
    assert len(loaded) == 0
    assert list(loaded.columns) == COLUMNS + results.DERIVED_COLUMNS


def test_store_with_only_an_empty_run(tmp_path: Path) -> None:
    results.append(pd.DataFrame(), tmp_path)
    loaded = results.load(tmp_path)
    assert len(loaded) == 0
    assert set(COLUMNS) <= set(loaded.columns)


def test_conform_orders_schema_first() -> None:
    frame = pd.DataFrame({"zzz": [1], "model": ["m"], "auc": [0.5]})
    conformed = results.conform(frame)
    assert list(conformed.columns) == COLUMNS + ["zzz"]
    assert conformed["model"].iloc[0] == "m"
    assert conformed["backend"].isna().all()
    assert list(frame.columns) == ["zzz", "model", "auc"]  # the input is not modified


def test_files_are_written_atomically(tmp_path: Path) -> None:
    for i in range(3):
        results.append(_run(f"r{i}"), tmp_path)
    names = _files(tmp_path)
    assert len(names) == 3
    assert all(n.endswith(".parquet") and not n.startswith(".") for n in names)
    assert not [n for n in names if n.endswith(".tmp")]


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        results.append(_run("doomed"), tmp_path)
    monkeypatch.undo()
    assert _files(tmp_path) == []
    assert len(results.load(tmp_path)) == 0


def test_fingerprint_of_returns_packages_dict(tmp_path: Path) -> None:
    run = _run("fp")
    results.append(run, tmp_path)
    loaded = results.load(tmp_path)
    fp = results.fingerprint_of(loaded)
    assert fp["packages"] == run["packages"].iloc[0]
    assert isinstance(fp["packages"], dict)
    assert fp["host"] == "testhost"
    assert fp["cpu"] == "Test CPU"
    assert fp["python"] == "3.12.0"
    assert fp["git_commit"] == "abc123"
    json.dumps(fp)  # plain values only (a numpy int once showed as "np.int64(2)" on the Runs page)
    assert fp["cpu_cores"] == 4
    # an in-memory run with the dict itself works too
    assert results.fingerprint_of(run)["packages"] == run["packages"].iloc[0]


def test_load_keeps_append_order_within_one_second(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two runs in the same second whose random suffixes happen to sort in reverse.
    suffixes = iter(["f" * 32, "0" * 32])
    monkeypatch.setattr(results, "uuid", types.SimpleNamespace(uuid4=lambda: uuid.UUID(next(suffixes))))
    monkeypatch.setattr(results.time, "strftime", lambda fmt, t=None: "20240101T000000")
    results.append(_run("earlier", n=1), tmp_path)
    results.append(_run("later", n=1), tmp_path)
    monkeypatch.undo()
    assert list(results.load(tmp_path)["run_id"]) == ["earlier", "later"]


# -- from_asv: asv result files in the results schema ----------------------------------------------
# The fixtures are written in asv's on-disk format (results API version 2) and read back through
# asv's own loader, as `asv compare` reads them.

_COMMITS = {"a" * 40: 1_700_000_000_000, "b" * 40: 1_700_086_400_000}  # commit -> commit date (ms)
_ENV = "virtualenv-py3.11-torch2.13.0"


def _bench(name: str, kind: str, unit: str, param_names: list[str], params: list[list[str]], version: str = "1") -> dict:
    return {"name": name, "type": kind, "unit": unit, "param_names": param_names, "params": params,
            "version": version, "code": "", "timeout": 60}


def _write_asv_results(folder: Path, *, version_of_results: str = "1", machine: str = "m1") -> None:
    asv_util = pytest.importorskip("asv.util")
    models, backends, batches = ["'jet_dnn'"], ["'cpp'", "'onnxruntime'", "'keras'"], ["1", "1024"]
    per_batch = [models, backends, batches]
    per_backend = [models, backends]
    names3, names2 = ["model", "backend", "batch_size"], ["model", "backend"]
    benchmarks = {
        "backends.Latency.track_latency_p50_us": _bench("backends.Latency.track_latency_p50_us", "track", "µs", names3, per_batch),
        "backends.Call.time_call": _bench("backends.Call.time_call", "time", "seconds", names3, per_batch),
        "backends.Accuracy.track_argmax_disagreement": _bench("backends.Accuracy.track_argmax_disagreement", "track", "fraction", names2, per_backend),
        "backends.Accuracy.track_auc_loss": _bench("backends.Accuracy.track_auc_loss", "track", "AUC", names2, per_backend),
        "backends.PrepareMemory.peakmem_prepare": _bench("backends.PrepareMemory.peakmem_prepare", "peakmemory", "bytes", names2, per_backend),
        "other.time_unrelated": _bench("other.time_unrelated", "time", "seconds", [], []),
    }
    asv_util.write_json(str(folder / "benchmarks.json"), benchmarks, api_version=2)
    asv_util.write_json(str(folder / machine / "machine.json"),
                        {"machine": machine, "cpu": "Test CPU", "num_cpu": "4", "os": "Linux test", "arch": "x86_64", "ram": "1"},
                        api_version=1)
    nan = float("nan")
    for i, (commit, date) in enumerate(_COMMITS.items()):
        scale = 1.0 + i  # the second commit is twice as slow
        # order: cpp 1, cpp 1024, onnxruntime 1, onnxruntime 1024, keras 1, keras 1024
        p50 = [2.0 * scale, 150.0 * scale, 20.0 * scale, 300.0 * scale, nan, nan]
        call_s = [v * 1e-6 if v == v else nan for v in p50]
        call_s[3] = None  # onnxruntime at 1024 failed in this commit's time_call
        stats = [{"q_25": v * 0.9, "q_75": v * 1.1} if v is not None and v == v else None for v in call_s]
        started = date + 3_600_000
        results = {
            "backends.Latency.track_latency_p50_us": [p50, per_batch, version_of_results, started, 1.0],
            "backends.Call.time_call": [call_s, per_batch, version_of_results, started, 1.0,
                                        [None] * 6, [None] * 6,
                                        [s["q_25"] if s else None for s in stats], [s["q_75"] if s else None for s in stats]],
            "backends.Accuracy.track_argmax_disagreement": [[0.0, 0.002, nan], per_backend, version_of_results, started, 1.0],
            "backends.Accuracy.track_auc_loss": [[0.02, 0.021, nan], per_backend, version_of_results, started, 1.0],
            "backends.PrepareMemory.peakmem_prepare": [[300 * 2**20, 320 * 2**20, nan], per_backend, version_of_results, started, 1.0],
            "other.time_unrelated": [[0.5], [], version_of_results, started, 1.0],
        }
        data = {
            "commit_hash": commit, "env_name": _ENV, "date": date, "python": "3.11",
            "params": {"machine": machine, "python": "3.11", "torch": "2.13.0"}, "requirements": {"torch": "2.13.0"},
            "env_vars": {}, "durations": {},
            "result_columns": ["result", "params", "version", "started_at", "duration", "stats_ci_99_a",
                               "stats_ci_99_b", "stats_q_25", "stats_q_75", "stats_number", "stats_repeat", "samples", "profile"],
            "results": results,
        }
        asv_util.write_json(str(folder / machine / f"{commit[:8]}-{_ENV}.json"), data, api_version=2)


def test_from_asv_one_row_per_commit_model_backend_batch(tmp_path: Path) -> None:
    _write_asv_results(tmp_path)
    frame = results.from_asv(tmp_path)
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert {"commit_hash", "commit_date", "asv_env", "asv_machine"} <= set(frame.columns)
    # keras was skipped everywhere (NaN): no rows; 2 commits x 2 backends x 2 batch sizes remain
    assert len(frame) == 8
    assert set(frame["backend"]) == {"cpp", "onnxruntime"}
    assert not frame.duplicated(["commit_hash", "model", "backend", "batch_size"]).any()
    assert sorted(frame["batch_size"].unique().tolist()) == [1, 1024]
    dates = {c: pd.Timestamp(ms, unit="ms", tz="UTC") for c, ms in _COMMITS.items()}
    assert all(frame["commit_date"] == frame["commit_hash"].map(dates))
    assert list(frame["git_commit"]) == list(frame["commit_hash"])
    assert list(frame["commit_hash"]) == sorted(frame["commit_hash"])  # oldest commit first


def test_from_asv_values_units_and_derived_scores(tmp_path: Path) -> None:
    _write_asv_results(tmp_path)
    frame = results.from_asv(tmp_path).set_index(["commit_hash", "backend", "batch_size"])
    first, second = "a" * 40, "b" * 40
    assert frame.loc[(first, "cpp", 1), "latency_p50_us"] == pytest.approx(2.0)
    assert frame.loc[(second, "cpp", 1024), "latency_p50_us"] == pytest.approx(300.0)
    assert frame.loc[(first, "cpp", 1), "time_call_us"] == pytest.approx(2.0)  # seconds -> µs
    assert frame.loc[(first, "cpp", 1), "time_call_q25_us"] == pytest.approx(1.8)
    # per-backend metrics (no batch parameter) fill every batch row of their model x backend
    for batch in (1, 1024):
        # tracked under its old name, read as the vocabulary's accuracy_drop (a migration)
        assert "argmax_disagreement" not in frame.columns
        assert frame.loc[(first, "onnxruntime", batch), "accuracy_drop"] == pytest.approx(0.002)
        assert frame.loc[(first, "onnxruntime", batch), "argmax_agreement"] == pytest.approx(0.998)
        assert frame.loc[(first, "onnxruntime", batch), "auc"] == pytest.approx(1 - 0.021)
        assert frame.loc[(first, "onnxruntime", batch), "peakmem_prepare_mb"] == pytest.approx(320.0)
    row = frame.loc[(first, "cpp", 1)]
    assert row["host"] == "m1" and row["asv_machine"] == "m1" and row["asv_env"] == _ENV
    assert row["cpu"] == "Test CPU" and row["cpu_cores"] == 4 and row["platform"] == "Linux test"
    assert json.loads(row["packages"]) == {"torch": "2.13.0"}
    assert row["timestamp"] == pd.Timestamp(_COMMITS[first] + 3_600_000, unit="ms", tz="UTC")


def test_from_asv_failed_benchmark_marks_the_row(tmp_path: Path) -> None:
    _write_asv_results(tmp_path)
    frame = results.from_asv(tmp_path)
    failed = frame[frame["status"] == "error"]
    assert len(failed) == 2  # onnxruntime at 1024, in both commits
    assert set(failed["backend"]) == {"onnxruntime"} and set(failed["batch_size"]) == {1024}
    assert failed["time_call_us"].isna().all()
    assert failed["latency_p50_us"].notna().all()  # what did run is kept
    assert all("time_call" in e for e in failed["error"])
    assert (frame.loc[frame["status"] == "ok", "error"].isna()).all()


def test_from_asv_machine_filter_and_stale_versions(tmp_path: Path) -> None:
    _write_asv_results(tmp_path, machine="m1")
    assert len(results.from_asv(tmp_path, machine="m1")) == 8
    assert len(results.from_asv(tmp_path, machine="other")) == 0
    stale = tmp_path / "stale"
    _write_asv_results(stale, version_of_results="0")  # results of an older suite version
    frame = results.from_asv(stale)
    assert len(frame) == 0 and set(COLUMNS) <= set(frame.columns)


@pytest.mark.parametrize("make_folder", [False, True])
def test_from_asv_missing_or_empty_results(tmp_path: Path, make_folder: bool) -> None:
    folder = tmp_path / "results"
    if make_folder:
        folder.mkdir()
    frame = results.from_asv(folder)
    assert len(frame) == 0
    assert list(frame.columns) == COLUMNS + results.ASV_COLUMNS + results.DERIVED_COLUMNS


# -- a store that degrades, not dies -------------------------------------------------------------------

def _garbage_files(folder: Path, good: Path) -> dict[str, str]:
    """One file of each kind that must be skipped, named by file -> the words its reason must contain."""
    folder.joinpath("garbage.parquet").write_bytes(b"this is not parquet at all")
    folder.joinpath("empty.parquet").write_bytes(b"")
    folder.joinpath("truncated.parquet").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    pd.DataFrame({"x": [1, 2]}).to_parquet(folder / "foreign.parquet")  # valid Parquet, not ours
    bad_time = _run("badtime", n=1).drop(columns=["timestamp"]).assign(timestamp=["not a time"])
    results.conform(bad_time).astype({"options": str, "packages": str}).to_parquet(folder / "badtime.parquet")
    (folder / "folder.parquet").mkdir()
    return {"garbage.parquet": "not a readable Parquet file", "empty.parquet": "not a readable Parquet file",
            "truncated.parquet": "not a readable Parquet file", "foreign.parquet": "no column(s) run_id, model, backend, status",
            "badtime.parquet": "unreadable contents", "folder.parquet": "not a regular file"}


def test_unreadable_files_are_skipped_with_a_warning_naming_each(tmp_path: Path) -> None:
    good = results.append(_run("good", n=3), tmp_path)
    expected = _garbage_files(tmp_path, good)
    with pytest.warns(results.StoreWarning) as caught:
        loaded = results.load(tmp_path)
    assert list(loaded["run_id"]) == ["good"] * 3
    messages = [str(w.message) for w in caught]
    for name, reason in expected.items():
        assert [m for m in messages if str(tmp_path / name) in m and reason in m], (name, messages)
    assert len(messages) == len(expected)
    # skipped, never deleted: the user may want to look at them
    assert all((tmp_path / name).exists() for name in expected)


def test_read_store_counts_and_names_what_it_skipped(tmp_path: Path) -> None:
    good = results.append(_run("good", n=2), tmp_path)
    expected = _garbage_files(tmp_path, good)
    contents = results.read_store(tmp_path, warn=False)
    assert contents.files == (good,)
    assert sorted(item.path.name for item in contents.skipped) == sorted(expected)
    assert all(expected[item.path.name] in item.reason for item in contents.skipped)
    assert len(contents.frame) == 2 and list(contents.frame.columns[: len(COLUMNS)]) == COLUMNS


def test_a_store_of_only_bad_files_loads_empty(tmp_path: Path) -> None:
    (tmp_path / "garbage.parquet").write_bytes(b"\x00" * 64)
    with pytest.warns(results.StoreWarning, match="garbage.parquet"):
        loaded = results.load(tmp_path)
    assert len(loaded) == 0 and list(loaded.columns) == COLUMNS + results.DERIVED_COLUMNS


def _leftover(folder: Path, target_name: str, data: bytes, age_s: float) -> Path:
    """A temp file as atomic_write_bytes names it, last modified `age_s` seconds ago."""
    leftover = folder / f".{target_name}.k1ll3d_.tmp"
    leftover.write_bytes(data)
    stamp = leftover.stat().st_mtime - age_s
    os.utime(leftover, (stamp, stamp))
    return leftover


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    results.conform(frame).to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_stale_leftovers_are_recovered_when_complete_and_removed_when_not(tmp_path: Path) -> None:
    old = results.STALE_TMP_AGE_S + 60
    complete = _leftover(tmp_path, "20240101T000000-1-aaaaaaaa.parquet", _parquet_bytes(_run("killed-before-rename", n=2)), old)
    full = _parquet_bytes(_run("killed-while-writing", n=2))
    partial = _leftover(tmp_path, "20240101T000000-2-bbbbbbbb.parquet", full[: len(full) // 3], old)
    with pytest.warns(results.StoreWarning) as caught:
        contents = results.read_store(tmp_path)
    recovered = tmp_path / "20240101T000000-1-aaaaaaaa.parquet"
    assert contents.recovered == (recovered,) and recovered.is_file() and not complete.exists()
    assert [item.path for item in contents.removed] == [partial] and not partial.exists()
    assert not (tmp_path / "20240101T000000-2-bbbbbbbb.parquet").exists()
    assert list(contents.frame["run_id"]) == ["killed-before-rename"] * 2
    assert contents.files == (recovered,) and not contents.skipped
    text = " ".join(str(w.message) for w in caught)
    assert str(recovered) in text and str(partial) in text
    assert list(results.load(tmp_path)["run_id"]) == ["killed-before-rename"] * 2  # a second read finds a normal file


def test_young_leftovers_are_left_to_their_writer(tmp_path: Path) -> None:
    young = _leftover(tmp_path, "20240101T000000-1-cccccccc.parquet", _parquet_bytes(_run("in-progress")), 1.0)
    assert len(results.load(tmp_path)) == 0  # not read: the writer may still rename it
    assert young.exists()
    assert results.tidy(tmp_path) == ([], [])
    recovered, removed = results.tidy(tmp_path, stale_tmp_age_s=0.0)
    assert recovered == [tmp_path / "20240101T000000-1-cccccccc.parquet"] and removed == []


def test_a_leftover_replaces_the_older_version_of_its_run(tmp_path: Path) -> None:
    # A benchmark rewrites its run's file after each backend; killed between writing the third
    # version and renaming it, the leftover holds every row of the second version and more.
    path = results.new_run_path(tmp_path)
    whole = _run("growing", n=3)
    results.write_run(whole.iloc[:2], path)
    _leftover(tmp_path, path.name, _parquet_bytes(whole), results.STALE_TMP_AGE_S + 1)
    with pytest.warns(results.StoreWarning, match="recovered"):
        loaded = results.load(tmp_path)
    assert list(loaded["backend"]) == list(whole["backend"])  # three rows, none twice
    assert _files(tmp_path) == [path.name]


def test_unrelated_hidden_files_are_not_touched(tmp_path: Path) -> None:
    other = _leftover(tmp_path, "notes.txt", b"mine", results.STALE_TMP_AGE_S + 1)  # not a results temp file
    results.append(_run("r"), tmp_path)
    assert len(results.load(tmp_path)) == 2
    assert other.read_bytes() == b"mine"


def test_write_run_rewrites_one_file(tmp_path: Path) -> None:
    path = results.new_run_path(tmp_path)
    assert not path.exists() and path.parent == tmp_path
    run = _run("one", n=3)
    for n in (1, 2, 3):
        assert results.write_run(run.iloc[:n], path) == path
        assert _files(tmp_path) == [path.name]
        assert len(results.load(tmp_path)) == n
