"""yukti.results at scale: a store of a few hundred runs of mixed schemas loads exactly the rows
written, through the Arrow path and through the store's index (yukti.results.read_store), and
benchmarks/store_load.py (which times the same on 10,000 runs) works on a small store."""

from __future__ import annotations

import importlib.util
import random
import shutil
import warnings
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from yukti import curves, results

ROOT = Path(__file__).resolve().parents[2]
N_RUNS = results.INDEX_MIN_FILES + 40  # enough for the store to keep an index
START = pd.Timestamp("2026-01-01T00:00:00Z")


def _run(i: int, kind: str, rng: random.Random) -> pd.DataFrame:
    """Run `i`: 1 to 3 rows, with the twist `kind` gives its file."""
    rows = []
    for b in range(rng.randint(1, 3)):
        rows.append({
            "run_id": f"run{i:04d}", "model": "jet_dnn", "backend": f"backend{b}", "status": "ok",
            "batch_size": 2**b, "threads": 1, "latency_p50_us": 10.0 * i + b, "throughput_per_s": 1000.0 + i,
            "options": {"threads": 1}, "packages": {"numpy": "2.0"}, "host": f"host{i % 3}", "cpu": "Test CPU",
            "cpu_cores": 4, "timestamp": START + pd.Timedelta(seconds=i), "latency_native_p50_us": None,
        })
    run = pd.DataFrame(rows)
    if kind == "extra":  # a column only some runs have
        run["new_metric"] = 0.5 * i
    elif kind == "float_cores":  # float where the other files have integers
        run["cpu_cores"] = run["cpu_cores"].astype(float)
    elif kind == "native":  # a value where the other files have an all-empty column
        run["latency_native_p50_us"] = 1.0 * i
    elif kind == "naive_time":  # written without a time zone: read as UTC
        run["timestamp"] = run["timestamp"].dt.tz_localize(None)
    elif kind == "text_time":
        run["timestamp"] = run["timestamp"].map(lambda t: t.isoformat())
    elif kind == "empty":
        run = run.iloc[:0]
    return run


KINDS = ["plain"] * 8 + ["extra", "float_cores", "native", "naive_time", "text_time", "empty"]


def _write_store(folder: Path, n: int) -> dict[str, pd.DataFrame]:
    """`n` runs of mixed kinds, plus a damaged file, a foreign one and a curves side file;
    returns file name -> the run written there."""
    rng = random.Random(15)
    written = {}
    for i in range(n):
        path = folder / f"20260101T000000-{i:020d}-run.parquet"
        run = _run(i, KINDS[i % len(KINDS)], rng)
        results.write_run(run, path)
        written[path.name] = run
    first = folder / next(iter(written))
    curves.write(curves.empty(), curves.path_for(first, "run0000"))
    (folder / "20260101T000000-00000000000000000005-zz.parquet").write_bytes(first.read_bytes()[:200])  # damaged
    pd.DataFrame({"x": [1]}).to_parquet(folder / "foreign.parquet")
    return written


@pytest.fixture(scope="module")
def template_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, pd.DataFrame]]:
    folder = tmp_path_factory.mktemp("scale") / "store"
    return folder, _write_store(folder, N_RUNS)


@pytest.fixture
def store(template_store: tuple[Path, dict[str, pd.DataFrame]], tmp_path: Path) -> tuple[Path, dict[str, pd.DataFrame]]:
    """A fresh copy of the written store (tests change it), with no index yet."""
    folder = tmp_path / "store"
    shutil.copytree(template_store[0], folder)
    return folder, dict(template_store[1])


def _load(folder: Path) -> results.StoreContents:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        contents = results.read_store(folder)
    skipped = sorted(str(w.message) for w in caught if issubclass(w.category, results.StoreWarning))
    assert skipped == sorted(f"skipped {item.path}: {item.reason}" for item in contents.skipped)
    return contents


def _expected(written: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return pd.concat([written[name] for name in sorted(written) if len(written[name])], ignore_index=True)


def _check_rows(loaded: pd.DataFrame, written: dict[str, pd.DataFrame]) -> None:
    expected = _expected(written)
    assert len(loaded) == len(expected)
    for column in ("run_id", "backend", "batch_size", "host", "latency_p50_us", "throughput_per_s"):
        assert loaded[column].tolist() == expected[column].tolist(), column
    assert loaded["timestamp"].tolist() == [pd.Timestamp(t).tz_localize("UTC") if pd.Timestamp(t).tzinfo is None
                                            else pd.Timestamp(t) for t in expected["timestamp"]]
    assert str(loaded["timestamp"].dt.tz) == "UTC"
    extra = expected["new_metric"]
    assert loaded["new_metric"].isna().tolist() == extra.isna().tolist()
    assert loaded["new_metric"].dropna().tolist() == extra.dropna().tolist()
    native = pd.to_numeric(expected["latency_native_p50_us"])
    assert loaded["latency_native_p50_us"].dtype == float  # an all-empty column in most files does not make it object
    assert loaded["latency_native_p50_us"].dropna().tolist() == native.dropna().tolist()
    assert loaded["cpu_cores"].tolist() == [4] * len(expected)
    assert list(loaded.columns[: len(results.COLUMNS)]) == results.COLUMNS
    assert list(loaded.columns[len(results.COLUMNS):]) == ["new_metric", *results.DERIVED_COLUMNS]
    assert loaded.index.tolist() == list(range(len(expected)))


@pytest.mark.slow  # writes a few hundred files (the first test pays for them)
def test_a_few_hundred_mixed_runs_load_exactly_the_rows_written(store: tuple[Path, dict[str, pd.DataFrame]]) -> None:
    folder, written = store
    first = _load(folder)
    _check_rows(first.frame, written)
    assert [p.name for p in first.files] == sorted(written)  # every run file, the curves file not among them
    assert sorted(item.path.name for item in first.skipped) == ["20260101T000000-00000000000000000005-zz.parquet",
                                                                 "foreign.parquet"]
    assert "not a readable Parquet file" in first.skipped[0].reason
    assert results.index_path(folder).is_file()
    again = _load(folder)  # from the index: no run file is read again
    pd.testing.assert_frame_equal(again.frame, first.frame)
    assert again.files == first.files and again.skipped == first.skipped


@pytest.mark.slow
def test_the_index_follows_the_store_as_runs_come_and_go(store: tuple[Path, dict[str, pd.DataFrame]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    folder, written = store
    _load(folder)
    names = sorted(written)
    rng = random.Random(1)
    extra = [n for n in names if KINDS[int(n.split("-")[1]) % len(KINDS)] == "extra"]
    for name in sorted(set(names[10:20] + extra)):
        (folder / name).unlink()  # the runs that had new_metric go: so does the column
        del written[name]
    rewritten = names[40]
    written[rewritten] = _run(9000, "native", rng)
    results.write_run(written[rewritten], folder / rewritten)  # a run rewritten in the middle of the store
    for i in range(3):  # new runs, one sorting among the old ones
        name = f"20260101T000000-{N_RUNS + i if i else 45:020d}-new.parquet"
        written[name] = _run(N_RUNS + i, "plain", rng)
        results.write_run(written[name], folder / name)
    broken = names[60]
    (folder / broken).write_bytes(b"not parquet any more")
    del written[broken]

    loaded = _load(folder)
    assert broken in {item.path.name for item in loaded.skipped}
    assert "new_metric" not in loaded.frame.columns
    expected = _expected(written)
    assert loaded.frame["run_id"].tolist() == expected["run_id"].tolist()
    assert loaded.frame["latency_p50_us"].tolist() == expected["latency_p50_us"].tolist()
    # the same as reading every file, without the index
    monkeypatch.setattr(results, "INDEX_MIN_FILES", 10**9)
    direct = _load(folder)
    pd.testing.assert_frame_equal(loaded.frame, direct.frame)
    assert loaded.files == direct.files and loaded.skipped == direct.skipped


@pytest.mark.slow
def test_a_damaged_index_costs_time_not_rows(store: tuple[Path, dict[str, pd.DataFrame]]) -> None:
    folder, written = store
    first = _load(folder)
    results.index_path(folder).write_bytes(b"\x00" * 100)
    pd.testing.assert_frame_equal(_load(folder).frame, first.frame)
    assert results.index_path(folder).stat().st_size > 100  # rewritten


@pytest.mark.slow
def test_types_arrow_cannot_unify_are_combined_by_pandas(store: tuple[Path, dict[str, pd.DataFrame]]) -> None:
    folder, written = store
    _load(folder)  # with an index, which the odd file then makes unusable
    odd = _run(5000, "plain", random.Random(0)).assign(threads="auto")  # text where the others have integers
    name = "20260101T000000-99999999999999999999-odd.parquet"
    results.write_run(odd, folder / name)
    written[name] = odd
    loaded = _load(folder).frame
    assert loaded["run_id"].tolist() == _expected(written)["run_id"].tolist()
    assert loaded["threads"].tolist() == [1] * (len(loaded) - len(odd)) + ["auto"] * len(odd)


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("store_load_under_test", ROOT / "benchmarks" / "store_load.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_store_load_script_fills_and_loads_a_store(tmp_path: Path) -> None:
    script = _script()
    # asv imports every module of benchmarks/ and runs what is named like a benchmark
    assert not [n for n in vars(script) if n.startswith(("time_", "track_", "mem_", "peakmem_", "timeraw_"))]
    template = pd.concat([_run(0, "plain", random.Random(2))] * 2, ignore_index=True)
    rows = script.fill_store(tmp_path / "store", 12, template)
    loaded = script.load_in_fresh_process(tmp_path / "store", cache_dir=tmp_path / "cache")
    assert loaded["rows"] == rows and loaded["runs"] == 12 and loaded["load_s"] > 0
    stored = results.load(tmp_path / "store")
    assert sorted(stored["host"].unique()) == sorted(script.HOSTS)
