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
    assert list(loaded.columns[len(COLUMNS):]) == ["new_metric"]
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
    assert list(loaded.columns) == COLUMNS


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
