"""The Precision page and its data and chart functions, on hand-made scans stored with
yukti.precision.write_scan (no scan is run: the numbers are made up, shaped like a jet_dnn scan on the
fixed backend, and chosen so the page has definite answers: ap_fixed<12,6> is the smallest global
precision within an AUC drop of 0.005, ap_fixed<8,4> is too narrow for the hidden layers)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

import yukti.precision
from yukti.dashboard import APP_PATH, charts, data
from yukti.fixed_point import FixedType

REFERENCE_AUC = 0.9803
MAX_AUC_DROP = 0.005
GLOBAL_ID, PER_LAYER_ID = "5fe7c048b3af", "afdb52351d04"
LAYERS = ["input_1", "_0", "_1", "_2", "_3", "_4", "_5", "_6", "_7"]
# (width, integer bits): (argmax agreement, AUC, max |Δ|, mean |Δ|, overflows per layer)
GLOBAL = {
    (8, 4): (0.63, 0.930, 1.0, 0.14, {"_2": 114, "_4": 49, "_7": 84}),
    (8, 6): (0.21, 0.500, 1.0, 0.22, {}),
    (10, 4): (0.80, 0.950, 1.0, 0.08, {"_2": 98, "_4": 301}),
    (10, 6): (0.85, 0.940, 0.9, 0.06, {"_7": 40}),
    (12, 4): (0.86, 0.768, 1.0, 0.05, {"_2": 266, "_4": 601, "_6": 272, "_7": 1785}),
    (12, 6): (0.93, 0.9768, 0.48, 0.031, {"_7": 3}),
    (14, 4): (0.87, 0.960, 1.0, 0.04, {"_2": 250}),
    (14, 6): (0.98, 0.9795, 0.12, 0.008, {}),
}
# the float model's values per hls4ml layer, as yukti.precision.profile reports them
PROFILE = pd.DataFrame({
    "layer": LAYERS,
    "class": ["Input", "Dense", "Activation", "Dense", "Activation", "Dense", "Activation", "Dense", "Softmax"],
    "min": [-3.25, -4.61, 0.0, -17.41, 0.0, -17.04, 0.0, -18.15, 0.0],
    "max": [5.36, 4.92, 4.92, 12.57, 12.57, 17.85, 17.85, 28.82, 1.0],
    "abs_max": [5.36, 4.92, 4.92, 17.41, 12.57, 17.85, 17.85, 28.82, 1.0],
    "abs_p999": [3.61, 3.35, 3.23, 10.38, 8.45, 12.08, 11.80, 21.18, 1.0],
    "integer_bits": [4, 4, 4, 6, 5, 6, 6, 6, 2],
    "weight_abs_max": [None, 0.91, None, 0.69, None, 0.74, None, 0.48, None],
    "weight_integer_bits": [None, 1, None, 1, None, 1, None, 1, None],
    "bias_abs_max": [None, 0.55, None, 0.36, None, 0.41, None, 0.27, None],
    "bias_integer_bits": [None, 1, None, 1, None, 1, None, 1, None],
})


def common(scan_id: str, model: str, when: str) -> dict:
    return {"scan_id": scan_id, "model": model, "model_hash": "c3bde4fbdac3" * 4, "backend": "fixed",
            "reference_auc": REFERENCE_AUC, "task": "classification", "dataset": "jets_synthetic (synthetic)",
            "n_samples": 20000, "signal_class": "t", "timestamp": pd.Timestamp(when), "host": "fixturehost",
            "cpu": "Fixture CPU", "status": "ok"}


def global_scan(when: str = "2026-02-01T10:00:00Z", failed: bool = False) -> pd.DataFrame:
    """A global grid scan with a bound (max AUC drop), as yukti.precision.scan returns it."""
    rows = []
    for (width, integer), (agreement, auc, max_diff, mean_diff, overflows) in GLOBAL.items():
        rows.append({**common(GLOBAL_ID, "jet_dnn", when), "mode": "global", "config": f"ap_fixed<{width},{integer}>",
                     "width": width, "integer_bits": integer, "precision": f"ap_fixed<{width},{integer}>",
                     "layer_precision": None, "argmax_agreement": agreement, "auc": auc,
                     "auc_drop": REFERENCE_AUC - auc, "eff_at_bkg_1pct": auc - 0.11, "eff_at_bkg_10pct": auc - 0.05,
                     "max_abs_diff": max_diff, "mean_abs_diff": mean_diff, "overflows": sum(overflows.values()),
                     "overflow_layers": json.dumps(overflows), "prepare_s": 0.1})
    frame = pd.DataFrame(rows)
    if failed:  # a configuration that could not be built is a row with its error, and no numbers
        frame = pd.concat([pd.DataFrame([{**common(GLOBAL_ID, "jet_dnn", when), "mode": "global",
                                          "config": "ap_fixed<6,4>", "width": 6, "integer_bits": 4,
                                          "precision": "ap_fixed<6,4>", "status": "error",
                                          "error": "CompilationError: g++ ran out of patience"}]), frame],
                          ignore_index=True)
    frame["meets"] = (frame["auc_drop"] <= MAX_AUC_DROP) & (frame["status"] == "ok")
    frame["smallest"] = frame["config"] == "ap_fixed<12,6>"
    return frame


def per_layer_scan(model: str = "jet_dnn", when: str = "2026-01-15T10:00:00Z") -> pd.DataFrame:
    """A per-layer scan without a bound (no meets / smallest columns), its types from the profile."""
    rows = []
    for width, (agreement, auc, overflows) in {8: (0.25, 0.595, {}), 12: (0.96, 0.9784, {"_7": 13})}.items():
        layers = {}
        for r in PROFILE.to_dict("records"):
            if r["class"] == "Softmax":  # left to the model default, as yukti.precision.per_layer_precisions does
                continue
            entry = {"result": str(FixedType(width, min(width, int(r["integer_bits"]))))}
            if r["class"] == "Dense":
                entry.update(accum=entry["result"], weight=f"ap_fixed<{width},1>", bias=f"ap_fixed<{width},1>")
            layers[r["layer"]] = entry
        rows.append({**common(PER_LAYER_ID, model, when), "mode": "per-layer", "config": f"per-layer W={width}",
                     "width": width, "integer_bits": None, "precision": f"ap_fixed<{width},6>",
                     "layer_precision": json.dumps(layers, sort_keys=True), "argmax_agreement": agreement, "auc": auc,
                     "auc_drop": REFERENCE_AUC - auc, "eff_at_bkg_1pct": auc - 0.11, "eff_at_bkg_10pct": auc - 0.05,
                     "max_abs_diff": 1.0 - agreement, "mean_abs_diff": (1.0 - agreement) / 10,
                     "overflows": sum(overflows.values()), "overflow_layers": json.dumps(overflows), "prepare_s": 2.3})
    return pd.DataFrame(rows)


@pytest.fixture
def scan_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A results store holding a global scan (newest) and a per-layer scan of jet_dnn, and no benchmark run."""
    store = tmp_path / "results"
    yukti.precision.write_scan(per_layer_scan(), store)
    yukti.precision.write_scan(global_scan(failed=True), store)
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    return store


@pytest.fixture
def fake_profile(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """yukti.precision.profile replaced by the fixture profile (no hls4ml conversion); the names it was asked for."""
    calls: list[str] = []

    def profile(model: object, data: object = None, **kwargs: object) -> pd.DataFrame:
        calls.append(str(model))
        return PROFILE.copy()

    monkeypatch.setattr(yukti.precision, "profile", profile)
    return calls


def open_precision(timeout: float = 180) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=timeout)
    at.run()
    at.switch_page("app_pages/precision.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def trace_values(trace: dict, axis: str) -> np.ndarray:
    """A trace's x or y: plotly sends numeric arrays as base64 typed arrays ({"dtype", "bdata"})."""
    import base64

    values = trace[axis]
    if isinstance(values, dict) and "bdata" in values:
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=np.dtype(values["dtype"]))
    return np.asarray(values, dtype=float)


def trace_names(figure: dict) -> list[str]:
    return [t.get("name") for t in figure["data"]]


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    for element in at.dataframe:
        if set(columns) <= set(element.value.columns):
            return element.value
    raise AssertionError(f"no table with columns {columns}")


# -- the page ---------------------------------------------------------------------------------------

def test_precision_page_names_the_smallest_and_draws_the_scan(scan_store: Path) -> None:
    at = open_precision()
    assert [t.value for t in at.title] == ["Precision"]
    assert at.sidebar.selectbox(key="precision_model").value == "jet_dnn"
    assert at.sidebar.selectbox(key="precision_scan").options[0].endswith(GLOBAL_ID)  # newest scan first
    assert at.sidebar.selectbox(key="precision_scan").value == GLOBAL_ID
    assert any("**ap_fixed<12,6>**" in s.value for s in at.success)
    assert any("ap_fixed<6,4>" in w.value and "g++ ran out of patience" in w.value for w in at.warning)
    quality, agreement, error, overflow_total, overflow_bars, ranges = figures(at)
    assert trace_names(quality) == ["I=4", "I=6", "float reference", "smallest meeting the bound"]
    assert quality["data"][2]["y"] == [REFERENCE_AUC, REFERENCE_AUC]
    assert quality["data"][3]["text"] == ["ap_fixed<12,6>"]
    assert "float reference" in trace_names(agreement) and error["layout"]["yaxis"]["type"] == "log"
    # the configuration shown below defaults to the smallest one; its overflows are the softmax's 3
    assert at.selectbox(key="precision_config").value == "ap_fixed<12,6>"
    assert overflow_bars["data"][0]["x"] == ["_7"] and trace_values(overflow_bars["data"][0], "y").tolist() == [3]
    sums = [sum(GLOBAL[(width, 4)][4].values()) for width in (8, 10, 12, 14)]
    assert trace_values(overflow_total["data"][0], "y").tolist() == sums  # I=4: every layer's overflows
    # without a profile a global scan shows its one type's range
    assert trace_names(ranges) == ["representable by the type"]
    table = table_with(at, "config", "auc_drop", "overflows")
    assert len(table) == len(GLOBAL) + 1 and table.loc[table["config"] == "ap_fixed<6,4>", "status"].item() == "error"

    at.radio(key="precision_quality").set_value("auc_drop").run()
    assert not at.exception
    drop = figures(at)[0]
    assert "AUC drop" in drop["layout"]["yaxis"]["title"]["text"] and drop["data"][2]["y"] == [0.0, 0.0]


def test_precision_page_overflows_of_a_chosen_configuration(scan_store: Path) -> None:
    at = open_precision()
    at.selectbox(key="precision_config").set_value("ap_fixed<14,6>").run()
    assert not at.exception
    assert any("No value wrapped or saturated at ap_fixed<14,6>" in s.value for s in at.success)
    at.selectbox(key="precision_config").set_value("ap_fixed<8,4>").run()
    bars = next(f for f in figures(at) if trace_names(f) == ["overflows"])
    assert bars["data"][0]["x"] == ["_2", "_4", "_7"]  # the layers that overflowed, in layer order
    assert "247 values overflowed" in bars["layout"]["title"]["text"]


def test_precision_page_profiles_on_demand_and_flags_layers_outside_their_type(
        scan_store: Path, fake_profile: list[str]) -> None:
    at = open_precision()
    assert not fake_profile, "the profile is computed only when asked for"
    at.button(key="precision_profile").click().run()
    assert not at.exception
    assert fake_profile == ["jet_dnn"]
    ranges = table_with(at, "layer", "type", "lowest", "highest", "float_min", "float_max", "fits")
    assert ranges["layer"].tolist() == LAYERS and (ranges["type"] == "ap_fixed<12,6>").all()
    assert ranges["fits"].all()  # 6 integer bits hold every layer's float values
    assert trace_names(figures(at)[-1]) == ["representable by the type", "float values (profile)"]
    # ap_fixed<8,4> holds [-8, 8): the hidden layers from _2 on exceed it; the profile is not recomputed
    at.selectbox(key="precision_config").set_value("ap_fixed<8,4>").run()
    assert not at.exception and fake_profile == ["jet_dnn"]
    (warning,) = [w.value for w in at.warning if "outside their type's range" in w.value]
    assert all(f"**{name}**" in warning for name in ["_2", "_3", "_4", "_5", "_6"])
    assert "**_1**" not in warning and "**_7**" not in warning


def test_precision_page_per_layer_scan_shows_each_layer_type(scan_store: Path, fake_profile: list[str]) -> None:
    at = open_precision()
    at.sidebar.selectbox(key="precision_scan").set_value(PER_LAYER_ID).run()
    assert not at.exception
    assert any("without a bound" in i.value for i in at.info)  # no smallest: the scan had no bound
    assert trace_names(figures(at)[0]) == ["per-layer", "float reference"]
    assert at.selectbox(key="precision_config").value == "per-layer W=12"  # no smallest: the widest
    ranges = table_with(at, "layer", "type", "source").set_index("layer")
    assert ranges.loc["_2", "type"] == "ap_fixed<12,6>" and ranges.loc["_0", "type"] == "ap_fixed<12,4>"
    at.button(key="precision_profile").click().run()
    ranges = table_with(at, "layer", "type", "source", "fits").set_index("layer")
    assert ranges.loc["_7", "source"] == "model default"  # the softmax keeps the model-wide type
    assert ranges["fits"].all()


def test_precision_page_of_a_model_outside_the_zoo_offers_no_profile(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "results"
    yukti.precision.write_scan(per_layer_scan(model="my_net"), store)
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    at = open_precision()
    assert at.sidebar.selectbox(key="precision_model").value == "my_net"
    assert not at.button and any("not a zoo model" in c.value for c in at.caption)
    assert figures(at)  # the curves and the types' ranges are still drawn


def test_precision_page_without_scans_says_how_to_make_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(tmp_path / "empty"))
    at = open_precision()
    assert any("yukti scan jet_dnn" in i.value for i in at.info)
    assert not figures(at) and not at.sidebar.selectbox


def test_precision_page_of_a_regression_scan_draws_what_was_measured(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scan = global_scan().drop(columns=["meets", "smallest"])
    scan = scan.assign(task="regression", reference_auc=None, signal_class=None, auc=None, auc_drop=None,
                       eff_at_bkg_1pct=None, eff_at_bkg_10pct=None, argmax_agreement=None)
    store = tmp_path / "results"
    yukti.precision.write_scan(scan, store)
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    at = open_precision()
    assert any("No AUC" in c.value for c in at.caption) and any("No argmax agreement" in c.value for c in at.caption)
    assert [r.key for r in at.radio] == ["precision_error"]  # no AUC metric to pick
    titles = [f["layout"]["title"]["text"] for f in figures(at)]
    assert any("max |Δ|" in t for t in titles) and not any("AUC" in t for t in titles)


# -- data and charts -------------------------------------------------------------------------------

def test_load_scans_fills_what_a_scan_may_lack(scan_store: Path) -> None:
    scans = data.load_scans(scan_store)
    assert set(scans["scan_id"]) == {GLOBAL_ID, PER_LAYER_ID}
    per_layer = scans[scans["scan_id"] == PER_LAYER_ID]
    assert per_layer["meets"].isna().all() and per_layer["integer_bits"].isna().all()
    assert pd.api.types.is_numeric_dtype(scans["integer_bits"])
    listed = data.scan_list(scans, "jet_dnn")
    assert listed["scan_id"].tolist() == [GLOBAL_ID, PER_LAYER_ID]
    assert listed.set_index("scan_id").loc[GLOBAL_ID, ["configs", "failed", "smallest"]].tolist() == \
        [len(GLOBAL) + 1, 1, "ap_fixed<12,6>"]
    assert data.scan_fingerprint(scan_store) and data.scan_fingerprint(scan_store / "nothing") == ()
    assert data.load_scans(scan_store / "nothing").empty


def test_layer_ranges_are_the_types_representable_ranges() -> None:
    row = per_layer_scan().iloc[1]  # W=12
    alone = data.layer_ranges(row)
    assert alone["layer"].tolist() == sorted(LAYERS[:-1])  # the layers layer_precision names
    first = alone.set_index("layer").loc["_2"]
    assert (first["lowest"], first["highest"]) == (-32.0, 32.0 - 2.0 ** -6)
    profiled = data.layer_ranges(row, PROFILE).set_index("layer")
    assert profiled.index.tolist() == LAYERS  # the profile's order and layers, the softmax included
    assert profiled.loc["_7", ["type", "source"]].tolist() == ["ap_fixed<12,6>", "model default"]
    assert profiled.loc["_0", "float_max"] == pytest.approx(4.92)
    narrow = data.layer_ranges({"precision": "ap_fixed<8,4>", "layer_precision": None}, PROFILE).set_index("layer")
    assert narrow.loc["_1", "fits"] and not narrow.loc["_2", "fits"]
    assert data.layer_ranges({"precision": "ap_fixed<8,4>"})["layer"].tolist() == ["(every layer)"]


def test_a_bound_no_configuration_meets_names_no_smallest() -> None:
    frame = global_scan().assign(meets=False, smallest=False)
    rows = data.scan_rows(frame, GLOBAL_ID)
    assert data.bound_given(rows) and data.smallest_row(rows) is None
    unbounded = data.scan_rows(per_layer_scan().assign(meets=pd.NA, smallest=pd.NA), PER_LAYER_ID)
    assert not data.bound_given(unbounded) and data.smallest_row(unbounded) is None
    assert data.smallest_row(data.scan_rows(global_scan(), GLOBAL_ID))["config"] == "ap_fixed<12,6>"


def test_overflow_counts_parse_the_stored_json() -> None:
    counts = data.overflow_counts({"overflow_layers": json.dumps({"_2": 114, "_4": 49})})
    assert counts.to_dict("list") == {"layer": ["_2", "_4"], "overflows": [114, 49]}
    assert data.overflow_counts({"overflow_layers": None}).empty
    assert data.overflow_counts({"overflow_layers": "not json"}).empty


def test_precision_charts_have_one_trace_per_line_and_overlay() -> None:
    frame = pd.concat([global_scan(), per_layer_scan()], ignore_index=True)
    rows = data.scan_rows(frame, GLOBAL_ID)
    fig = charts.precision_curves(rows, "auc", reference=REFERENCE_AUC)
    assert len(fig.data) == 2 + 1 + 1  # I=4, I=6, the float reference, the smallest
    assert [t.name for t in fig.data][:2] == ["I=4", "I=6"]
    assert list(fig.data[3].x) == [12]
    assert len(charts.precision_curves(rows, "auc").data) == 3  # no reference given: none drawn
    layered = data.scan_rows(frame, PER_LAYER_ID)
    assert layered["line"].unique().tolist() == ["per-layer"]
    assert [t.name for t in charts.precision_curves(layered, "argmax_agreement", reference=1.0).data] == \
        ["per-layer", "float reference"]
    counts = data.overflow_counts(rows.iloc[0])
    assert len(charts.overflow_chart(counts).data) == 1
    assert len(charts.range_chart(data.layer_ranges(rows.iloc[0])).data) == 1
    assert len(charts.range_chart(data.layer_ranges(rows.iloc[0], PROFILE)).data) == 2
