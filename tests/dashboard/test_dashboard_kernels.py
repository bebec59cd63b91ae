"""The Kernels page (stored kernel sweeps, benchmarks/kernel_sweep.py) and the Throughput page's
achieved-rate chart, under streamlit.testing.v1.AppTest on fixture files; the data helpers behind them."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard_fixtures import LATEST, figures, make_run, open_page
from yukti import results
from yukti.dashboard import data

SIZES = (3, 16, 77)
BATCHES = (1, 64, 1024)
WORST = (77, 3, 1024)  # the one cell where cpp loses badly: ratio 2.5
NOT_MEASURED = (3, 77, 64)


def fixture_ratio(k: int, n: int, batch: int) -> float:
    """Made-up ratios: cpp well ahead at batch 1, near parity at 1024, one bad cell, one hole."""
    if (k, n, batch) == WORST:
        return 2.5
    if (k, n, batch) == NOT_MEASURED:
        return math.nan
    return {1: 0.2, 64: 0.6, 1024: 0.9}[batch] * (1 + (k + n) / 2000)


def make_sweep() -> pd.DataFrame:
    rows = []
    for k in SIZES:
        for n in SIZES:
            for batch in BATCHES:
                ratio = fixture_ratio(k, n, batch)
                ort_us = 1.0 + k * n * batch / 2000
                cpp_us = ratio * ort_us
                flop = 2 * k * n + n
                measured = not math.isnan(ratio)
                rows.append({"K": k, "N": n, "batch": batch, "cpp_us": cpp_us, "ort_us": ort_us, "ratio": ratio,
                             "gflops": flop * batch / cpp_us / 1e3 if measured else math.nan,
                             "pct_of_peak": 100 * flop * batch / cpp_us / 1e3 / 166.4 if measured else math.nan,
                             "flop_per_sample": flop, "status": "ok" if measured else "error",
                             "error": None if measured else "cpp: error: the compiler exploded",
                             "sweep_id": "fixturesweep", "timestamp": pd.Timestamp("2025-03-01T10:00:00Z"),
                             "host": "fixturehost", "cpu": "Fixture CPU", "git_commit": "0123abcd"})
    return pd.DataFrame(rows)


def write_sweep_fixture(store: Path, name: str = "20250301T100000-00000000000000000001.parquet",
                        frame: pd.DataFrame | None = None) -> Path:
    """A sweep file where benchmarks/kernel_sweep.py writes it (the browser test uses it too)."""
    folder = data.kernel_sweep_folder(store)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    (make_sweep() if frame is None else frame).to_parquet(path, index=False)
    return path


def array(values: object) -> np.ndarray:
    """A plotly array as sent to the browser (base64 typed arrays included), as floats."""
    import base64

    if isinstance(values, dict) and "bdata" in values:
        flat = np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
        shape = values.get("shape")  # "3, 3" for a 2-D array
        return flat.reshape([int(d) for d in str(shape).split(",")]) if shape else flat
    return np.asarray(values, dtype=float)


# -- data helpers ---------------------------------------------------------------------------------

def test_kernel_grid_is_k_by_n_in_numeric_order(tmp_path: Path) -> None:
    sweep = data.load_kernel_sweep(write_sweep_fixture(tmp_path))
    grid = data.kernel_grid(sweep, 1024)
    assert set(grid) == {"ratio", "cpp_us", "ort_us", "gflops"}
    ratio = grid["ratio"]
    assert ratio.index.tolist() == list(SIZES) and ratio.columns.tolist() == list(SIZES)  # 3 < 16 < 77, not "16" < "3"
    assert ratio.loc[77, 3] == 2.5 and ratio.loc[3, 77] == pytest.approx(fixture_ratio(3, 77, 1024))
    assert math.isnan(data.kernel_grid(sweep, 64)["ratio"].loc[NOT_MEASURED[:2]])
    worst = data.kernel_worst(sweep, 3)
    assert tuple(worst.iloc[0][["K", "N", "batch"]]) == WORST and worst["ratio"].is_monotonic_decreasing


def test_sweep_files_newest_first_and_a_bad_file_is_named(tmp_path: Path) -> None:
    older = write_sweep_fixture(tmp_path, "20250101T000000-1.parquet")
    newer = write_sweep_fixture(tmp_path, "20250201T000000-2.parquet")
    (data.kernel_sweep_folder(tmp_path) / ".20250301T000000-3.parquet.abc.tmp").write_bytes(b"half written")
    assert data.kernel_sweep_files(tmp_path) == [newer, older]
    bad = data.kernel_sweep_folder(tmp_path) / "20250401T000000-4.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(data.InputError, match="20250401T000000-4.parquet is not a readable kernel sweep"):
        data.load_kernel_sweep(bad)
    foreign = write_sweep_fixture(tmp_path, "20250501T000000-5.parquet", pd.DataFrame({"K": [1], "N": [2]}))
    with pytest.raises(data.InputError, match="no column"):
        data.load_kernel_sweep(foreign)


# -- the Kernels page ------------------------------------------------------------------------------

def test_kernels_page_draws_one_heatmap_per_batch_red_above_one(fixture_store: Path) -> None:
    write_sweep_fixture(fixture_store)
    at = open_page("kernels")
    heatmaps = figures(at)
    assert [f["layout"]["title"]["text"] for f in heatmaps] == [f"batch {b}: cpp / onnxruntime" for b in BATCHES]
    worst = heatmaps[2]["data"][0]
    assert worst["type"] == "heatmap"
    assert worst["x"] == [str(n) for n in SIZES] and worst["y"] == [str(k) for k in SIZES]
    z = array(worst["z"])
    k_row, n_col = SIZES.index(WORST[0]), SIZES.index(WORST[1])
    assert z[k_row][n_col] == pytest.approx(math.log2(2.5))  # coloured by log2(ratio): 0 is parity
    assert worst["text"][k_row][n_col] == "2.50"
    # white at parity, red above (RdBu reversed ends in red), symmetric range
    assert worst["zmid"] == 0 and worst["zmin"] == -worst["zmax"]
    # one colour scale for every batch: from the sweep's widest ratio (1/5 at batch 1), not each chart's own
    assert [f["data"][0]["zmax"] for f in heatmaps] == pytest.approx([-math.log2(fixture_ratio(3, 3, 1))] * len(BATCHES))
    low, high = worst["colorscale"][0][1], worst["colorscale"][-1][1]
    red, blue = [int(v) for v in high[4:-1].split(",")], [int(v) for v in low[4:-1].split(",")]
    assert red[0] > red[2] and blue[2] > blue[0]
    assert "cpp / onnxruntime" in worst["hovertemplate"] and "GFLOP/s" in worst["hovertemplate"]
    hole = array(heatmaps[1]["data"][0]["z"])[SIZES.index(NOT_MEASURED[0])][SIZES.index(NOT_MEASURED[1])]
    assert hole is None or math.isnan(hole)  # not measured: no colour
    table = next(t.value for t in at.dataframe if {"K", "N", "ratio"} <= set(t.value.columns))
    assert tuple(table.iloc[0][["K", "N", "batch"]]) == WORST
    assert any("not measured" in w.value and "compiler exploded" in w.value for w in at.warning)
    assert any("cpp slower in 1" in c.value and "Fixture CPU" in c.value for c in at.caption)


def test_kernels_page_picks_another_sweep(fixture_store: Path) -> None:
    write_sweep_fixture(fixture_store, "20250101T000000-1.parquet", make_sweep().query("batch == 1"))
    write_sweep_fixture(fixture_store, "20250201T000000-2.parquet")
    at = open_page("kernels")
    picker = at.sidebar.selectbox(key="kernels_sweep")
    assert [Path(o).name for o in picker.options] == ["20250201T000000-2.parquet", "20250101T000000-1.parquet"]
    assert len(figures(at)) == len(BATCHES)
    picker.set_value(picker.options[1]).run()
    assert not at.exception and len(figures(at)) == 1


def test_kernels_page_without_a_sweep_says_how_to_make_one(fixture_store: Path) -> None:
    at = open_page("kernels")
    assert not figures(at)
    assert any("python benchmarks/kernel_sweep.py" in i.value and "kernel_sweep" in i.value for i in at.info)


def test_kernels_page_names_an_unreadable_sweep(fixture_store: Path) -> None:
    folder = data.kernel_sweep_folder(fixture_store)
    folder.mkdir(parents=True)
    (folder / "20250301T000000-9.parquet").write_bytes(b"garbage")
    at = open_page("kernels")
    assert not figures(at) and any("20250301T000000-9.parquet" in e.value for e in at.error)


# -- the Throughput page's achieved rate -----------------------------------------------------------

FLOP, PEAK = 8798, 166.4


@pytest.fixture
def roofline_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One run of the fixture backends with the roofline facts the engine stores."""
    store = tmp_path / "results"
    results.append(make_run("roofline0001", LATEST, "2025-02-01T10:00:00Z").assign(flop_per_sample=FLOP, peak_gflops=PEAK), store)
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    return store


def test_throughput_page_draws_gflops_and_the_share_of_peak(roofline_store: Path) -> None:
    at = open_page("throughput")
    tput, bars, rate = figures(at)  # the existing two charts keep their places
    assert rate["layout"]["yaxis"]["type"] == "log" and "GFLOP/s" in rate["layout"]["yaxis"]["title"]["text"]
    stored = results.load(roofline_store).set_index(["backend", "batch_size"])
    cpp = next(t for t in rate["data"] if t["name"] == "cpp")
    expected = [FLOP * stored.loc[("cpp", b), "throughput_per_s"] / 1e9 for b in (1, 64, 1024)]
    np.testing.assert_allclose(array(cpp["y"]), expected)
    assert "flop_per_sample" in cpp["hovertemplate"] and "peak_gflops" in cpp["hovertemplate"]
    assert any(f"{FLOP:,}" in c.value and "166.4" in c.value for c in at.caption)
    at.radio(key="throughput_roofline").set_value("pct_of_peak").run()
    assert not at.exception
    share = figures(at)[2]
    cpp = next(t for t in share["data"] if t["name"] == "cpp")
    np.testing.assert_allclose(array(cpp["y"]), [100 * e / PEAK for e in expected])
    assert share["layout"]["yaxis"].get("type") != "log"
    assert any(s.get("y0") == 100 for s in share["layout"].get("shapes", []))  # the peak drawn as a line


def test_throughput_page_of_runs_without_flop_says_so(fixture_store: Path) -> None:
    at = open_page("throughput")
    assert len(figures(at)) == 2
    assert any("No FLOP count stored for jet_dnn" in c.value for c in at.caption)
