"""yukti.scan: profiling, precision scans (global grid and per-layer), the bound and the smallest
configuration meeting it, the scan store, and `yukti scan` on the command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import yukti
from yukti.cli import main
from yukti.precision import SCAN_COLUMNS, integer_bits_for, load_scans, per_layer_precisions, profile, scan

pytestmark = pytest.mark.skipif(not yukti.runner_class("fixed").available()[0], reason="fixed backend unavailable")


@pytest.mark.parametrize("value, bits", [(0.3, 1), (0.99, 1), (1.0, 2), (1.5, 2), (2.0, 3), (5.36, 4), (28.8, 6), (0.0, 1)])
def test_integer_bits_hold_the_value(value, bits):
    assert integer_bits_for(value) == bits
    if value:
        assert value < 2 ** (bits - 1)  # a signed type with that many integer bits holds it


def test_profile_names_hls4ml_layers_with_ranges(jet_dnn):
    prof = profile(jet_dnn, n_samples=500)
    assert prof["layer"].iloc[0] == "input_1" and {"Dense", "Activation", "Softmax"} <= set(prof["class"])
    dense = prof[prof["class"] == "Dense"]
    assert (dense["abs_max"] >= dense["max"]).all() and (dense["abs_max"] >= -dense["min"]).all()
    assert (dense["weight_integer_bits"] >= 1).all()
    x = jet_dnn.data.X[:500]
    assert prof["abs_max"].iloc[0] == pytest.approx(np.abs(x).max())
    config = per_layer_precisions(prof, 12)
    first = dense["layer"].iloc[0]
    assert config[first]["result"] == f"ap_fixed<12,{int(dense['integer_bits'].iloc[0])}>"
    assert "Softmax" not in {prof.set_index("layer").loc[name, "class"] for name in config}


def test_global_scan_finds_the_smallest_precision(jet_dnn, tmp_path):
    frame = scan(jet_dnn, ["ap_fixed<6,2>", "ap_fixed<16,6>", "ap_fixed<24,10>"], n_samples=3000, max_auc_drop=0.01,
                 store=tmp_path)
    assert list(frame.columns[:len(SCAN_COLUMNS) - 10]) == [c for c in SCAN_COLUMNS if c in frame.columns][:len(SCAN_COLUMNS) - 10]
    assert list(frame["config"]) == ["ap_fixed<6,2>", "ap_fixed<16,6>", "ap_fixed<24,10>"]  # cheapest first
    assert (frame["status"] == "ok").all()
    narrow, wide = frame.iloc[0], frame.iloc[2]
    assert narrow["overflows"] > 0 and narrow["auc_drop"] > wide["auc_drop"]
    assert json.loads(narrow["overflow_layers"])  # per layer, where it overflowed
    np.testing.assert_allclose(frame["auc_drop"], frame["reference_auc"] - frame["auc"])
    assert frame["meets"].tolist() == list(frame["auc_drop"] <= 0.01)
    smallest = frame.attrs["smallest"]
    assert smallest is not None and smallest["config"] == frame[frame["meets"]].iloc[0]["config"]
    assert frame["smallest"].sum() == 1
    stored = load_scans(tmp_path)
    assert len(stored) == 3 and set(stored["scan_id"]) == {frame["scan_id"].iloc[0]}


def test_per_layer_scan_uses_profiled_integer_bits(jet_dnn):
    frame = scan(jet_dnn, bits=[10, 14], per_layer=True, n_samples=2000, store=False)
    assert list(frame["mode"]) == ["per-layer", "per-layer"] and list(frame["width"]) == [10, 14]
    layers = json.loads(frame["layer_precision"].iloc[0])
    assert layers and all(entry["result"].startswith("ap_fixed<10,") for entry in layers.values() if "result" in entry)
    assert (frame["status"] == "ok").all()


def test_a_bound_nothing_meets_gives_no_smallest(jet_dnn):
    frame = scan(jet_dnn, ["ap_fixed<6,2>"], n_samples=1000, min_agreement=0.999, store=False)
    assert frame.attrs["smallest"] is None and not frame["meets"].any()


@pytest.mark.parametrize("kwargs, says", [
    ({"precisions": ["ap_fixed<4,8>"]}, "exceed the width"),
    ({"precisions": ["nonsense"]}, "does not parse"),
    ({"bits": [4], "int_bits": [6]}, "grid is empty"),
    ({"backend": "onnxruntime"}, "fixed-point backends"),
    ({"per_layer": True, "precisions": ["ap_fixed<8,3>"]}, "do not also give precisions"),
])
def test_bad_scans_are_refused_before_building(jet_dnn, kwargs, says):
    with pytest.raises(yukti.InputError, match=says):
        scan(jet_dnn, store=False, **kwargs)


def test_cli_scan_prints_the_table_and_the_smallest(capsys, jet_dnn, tmp_path):
    target = tmp_path / "scan.json"
    code = main(["scan", "jet_dnn", "--bits", "8..16:8", "--int-bits", "6", "--max-auc-drop", "0.02",
                 "--eval-samples", "2000", "--json", str(target), "--quiet", "--no-store"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "ap_fixed<8,6>" in out and "ap_fixed<16,6>" in out and "smallest precision with AUC drop <= 0.02" in out
    rows = json.loads(target.read_text())
    assert [r["config"] for r in rows] == ["ap_fixed<8,6>", "ap_fixed<16,6>"]


def test_cli_scan_exit_1_when_nothing_meets_the_bound(capsys, jet_dnn):
    code = main(["scan", "jet_dnn", "--precision", "ap_fixed<6,2>", "--min-agreement", "0.999", "--eval-samples", "500",
                 "--quiet", "--no-store"])
    assert code == 1 and "no configuration meets" in capsys.readouterr().out


@pytest.mark.parametrize("argument", ["--bits=18..6", "--bits=a..b", "--int-bits=6..8:0"])
def test_cli_scan_bad_ranges_are_usage_errors(capsys, argument):
    assert main(["scan", "jet_dnn", argument]) == 2
    assert "LOW..HIGH" in capsys.readouterr().err


def test_scan_store_is_apart_from_benchmark_runs(jet_dnn, tmp_path):
    scan(jet_dnn, ["ap_fixed<16,6>"], n_samples=500, store=tmp_path)
    assert not list(tmp_path.glob("*.parquet")) and len(list((tmp_path / "scans").glob("*.parquet"))) == 1
    assert isinstance(yukti.results.load(tmp_path), pd.DataFrame) and yukti.results.load(tmp_path).empty


def test_the_package_calls_them_by_name():
    import yukti.precision

    assert yukti.scan is yukti.precision.scan and yukti.profile is yukti.precision.profile
