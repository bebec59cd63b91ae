"""The Measure page: reading an uploaded model and data (dashboard/data.py, no Streamlit), and the
page under AppTest measuring a zoo model on a named dataset, and an uploaded ONNX file on an
uploaded CSV (AppTest of streamlit 1.67 drives st.file_uploader)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper
from streamlit.testing.v1 import AppTest

import yukti
from yukti import curves
from yukti.dashboard import APP_PATH, data
from yukti.errors import InputError, ModelLoadError

ONNX_MIME = "application/octet-stream"
FAST = {"measure_budget": 0.01, "measure_samples": 500}  # keep the measurements short


def linear_onnx(inputs: dict[str, int], classes: int = 2) -> bytes:
    """A softmax classifier over the concatenated inputs ({name: width}), as ONNX bytes."""
    rng = np.random.default_rng(0)
    width = sum(inputs.values())
    weights = numpy_helper.from_array(rng.standard_normal((width, classes)).astype(np.float32), "weights")
    nodes = []
    if len(inputs) > 1:
        nodes.append(helper.make_node("Concat", list(inputs), ["joined"], axis=1))
    nodes += [helper.make_node("MatMul", ["joined" if len(inputs) > 1 else next(iter(inputs)), "weights"], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=1)]
    graph = helper.make_graph(
        nodes, "linear", [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["N", w]) for n, w in inputs.items()],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", classes])], initializer=[weights])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture(scope="module")
def three_wide() -> yukti.Model:
    return data.load_uploaded_model("three wide.onnx", linear_onnx({"x": 3}))


@pytest.fixture(scope="module")
def two_inputs() -> yukti.Model:
    return data.load_uploaded_model("two_inputs.onnx", linear_onnx({"tracks": 3, "towers": 2}))


def table(labels: list, n_features: int = 3, target: str = "target") -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.standard_normal((len(labels), n_features)), columns=[f"f{i}" for i in range(n_features)])
    frame[target] = labels
    return frame


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def described(dataset: yukti.datasets.Dataset, model: yukti.Model | None = None) -> dict[str, str]:
    return dict(data.describe_data(dataset, model).itertuples(index=False, name=None))


# -- reading uploads (data.py) ---------------------------------------------------------------------------

def test_an_uploaded_model_is_named_by_its_sanitized_file_stem(three_wide: yukti.Model) -> None:
    assert three_wide.name.startswith("three_wide") and yukti.safe_names.is_identifier(three_wide.name)
    assert data.upload_name("../../jets.onnx") == "jets"  # a path sent as the name keeps only its last part
    assert data.upload_name(r"C:\models\jets.onnx") == "jets"
    assert "input 'x'" in described(yukti.datasets.as_dataset(np.zeros((2, 3), np.float32)), three_wide)


def test_an_uploaded_model_that_is_not_onnx_is_a_load_error_naming_the_file() -> None:
    with pytest.raises(ModelLoadError, match=r"evil\.onnx.*not a valid ONNX model"):
        data.load_uploaded_model("evil.onnx", b"\x00not onnx at all" * 10)
    with pytest.raises(ModelLoadError, match=r"empty\.onnx.*empty"):
        data.load_uploaded_model("empty.onnx", b"")


def test_a_parquet_table_with_string_labels(three_wide: yukti.Model) -> None:
    labels = ["signal", "background", "background", "signal", "background"]
    dataset = data.read_uploaded_data("events.parquet", parquet_bytes(table(labels)), "target", three_wide)
    assert dataset.name == "events" and dataset.X.shape == (5, 3)
    assert dataset.class_names == ("background", "signal")  # sorted, as yukti.datasets.from_frame reads a table
    assert dataset.y.tolist() == [1, 0, 0, 1, 0]
    shown = described(dataset, three_wide)
    assert shown["samples"] == "5" and shown["input 'x'"] == "(3,) float32 per sample"
    assert shown["class 0: background"] == "3" and shown["class 1: signal"] == "2"


def test_a_csv_table_with_integer_labels_and_the_label_column_guessed(three_wide: yukti.Model) -> None:
    frame = table([0, 1, 1, 1], target="Label")
    raw = frame.to_csv(index=False).encode()
    columns = list(data.read_upload_table("jets.csv", raw).columns)
    assert columns == ["f0", "f1", "f2", "Label"] and data.default_label(columns) == "Label"
    assert data.default_label(["a", "b"]) == data.NO_LABELS
    dataset = data.read_uploaded_data("jets.csv", raw, "Label", three_wide)
    assert dataset.class_names == ("0", "1") and np.bincount(dataset.y).tolist() == [1, 3]
    np.testing.assert_allclose(dataset.X, frame[["f0", "f1", "f2"]].to_numpy(np.float32))
    unlabelled = data.read_uploaded_data("jets.csv", frame.drop(columns="Label").to_csv(index=False).encode(),
                                         data.NO_LABELS, three_wide)
    assert unlabelled.y is None and described(unlabelled)["labels"].startswith("none")


def test_a_missing_label_column_is_an_input_error_naming_the_columns(three_wide: yukti.Model) -> None:
    raw = table([0, 1], target="kind").to_csv(index=False).encode()
    with pytest.raises(InputError, match=r"no label column 'target'.*\['f0', 'f1', 'f2', 'kind'\]"):
        data.read_uploaded_data("jets.csv", raw, "target", three_wide)


def test_data_of_the_wrong_width_is_an_input_error_listing_the_forms(three_wide: yukti.Model) -> None:
    raw = parquet_bytes(table([0, 1, 0], n_features=4))
    dataset = data.read_uploaded_data("wide.parquet", raw, "target", three_wide, check=False)  # read, not checked
    assert dataset.X.shape == (3, 4)
    with pytest.raises(InputError) as raised:
        data.read_uploaded_data("wide.parquet", raw, "target", three_wide)
    message = str(raised.value)
    assert "does not fit" in message and "float32[batch, 3]" in message
    assert ".npz holding an array X" in message and ".parquet or .csv table" in message  # the forms read here


def test_an_npz_of_x_and_y(three_wide: yukti.Model) -> None:
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    dataset = data.read_uploaded_data("batch.npz", npz_bytes(X=X, y=np.array(["b", "a", "a", "b"])), None, three_wide)
    assert dataset.name == "batch" and dataset.class_names == ("a", "b") and dataset.y.tolist() == [1, 0, 0, 1]
    np.testing.assert_array_equal(dataset.X, X)
    assert data.read_uploaded_data("batch.npz", npz_bytes(X=X), None, three_wide).y is None


def test_an_npz_of_one_array_per_model_input(two_inputs: yukti.Model) -> None:
    tracks, towers = np.ones((5, 3), np.float32), np.zeros((5, 2), np.float32)
    dataset = data.read_uploaded_data("event.npz", npz_bytes(towers=towers, tracks=tracks, y=np.arange(5) % 2), None,
                                      two_inputs)
    assert [a.shape for a in dataset.inputs] == [(5, 3), (5, 2)]  # in the model's input order, not the file's
    shown = described(dataset, two_inputs)
    assert shown["input 'tracks'"] == "(3,) float32 per sample" and shown["input 'towers'"] == "(2,) float32 per sample"
    with pytest.raises(InputError, match=r"holds arrays \['tracks'\].*\['tracks', 'towers'\]"):
        data.read_uploaded_data("event.npz", npz_bytes(tracks=tracks), None, two_inputs)
    with pytest.raises(InputError, match=r"has 2 inputs.*one array per model input name"):  # X for a two-input model
        data.read_uploaded_data("event.npz", npz_bytes(X=tracks), None, two_inputs)


@pytest.mark.parametrize("name, raw, message", [
    ("objects.npz", npz_bytes(X=np.array([{"a": 1}], dtype=object)), "could not be read as .npz"),
    ("broken.parquet", b"PAR1 but not really", "could not be read as Parquet"),
    ("model.onnx", b"whatever", "are not read here"),
])
def test_unreadable_uploads_are_input_errors(three_wide: yukti.Model, name: str, raw: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message):
        data.read_uploaded_data(name, raw, None, three_wide)


def test_measure_stores_one_run_and_tabulates_it(three_wide: yukti.Model, tmp_path: Path) -> None:
    dataset = data.read_uploaded_data("jets.csv", table([0, 1] * 20).to_csv(index=False).encode(), "target", three_wide)
    steps: list[float] = []
    frame = data.measure(three_wide, dataset, ["onnxruntime"], [1, 8], time_budget_s=0.01, store=tmp_path,
                         on_step=lambda fraction, text: steps.append(fraction))
    assert steps[-1] == 1.0 and steps == sorted(steps)
    stored = yukti.results.load(tmp_path)
    assert set(stored["run_id"]) == set(frame["run_id"]) and len(stored) == 2
    shown = data.measured_table(frame)
    assert shown["batch_size"].tolist() == [1, 8] and (shown["status"] == "ok").all()
    assert {"latency_p99_us", "auc", "argmax_agreement"} <= set(shown.columns) and "error" not in shown.columns
    assert "threads=1" in shown["options"].iloc[0]  # options as text, not JSON


# -- the page (AppTest) -----------------------------------------------------------------------------------

def open_measure(timeout: float = 300) -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=timeout)
    at.run()
    at.switch_page("app_pages/measure.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def set_fast(at: AppTest, backends: list[str], batches: list[int]) -> None:
    at.multiselect(key="measure_backends").set_value(backends)
    at.multiselect(key="measure_batches").set_value(batches)
    for key, value in FAST.items():
        at.number_input(key=key).set_value(value)


def stored_runs(store: Path) -> pd.DataFrame:
    files = [p for p in store.glob("*.parquet") if not curves.is_curves_file(p)] if store.is_dir() else []
    return pd.concat([pd.read_parquet(p) for p in files]) if files else pd.DataFrame()


def has_measure_button(at: AppTest) -> bool:
    return any(button.key == "measure_run" for button in at.button)


def table_with(at: AppTest, *columns: str) -> pd.DataFrame:
    found = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    assert found, f"no table with {columns}"
    return found[-1]


@pytest.mark.slow
def test_measure_a_zoo_model_on_a_named_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "results"
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    at = open_measure()
    assert at.selectbox(key="measure_zoo").value == "jet_dnn"
    own = yukti.zoo.get("jet_dnn").data  # a zoo model's own evaluation data is the default
    shown = dict(zip(*table_with(at, "item", "value").T.values))
    assert shown["data"] == own.label and shown["samples"] == f"{len(own):,}"
    assert not at.warning and not at.error
    at.radio(key="measure_data_source").set_value("name").run()
    at.selectbox(key="measure_dataset").set_value("jets_synthetic").run()
    assert any("read as it is" in w.value for w in at.warning)  # raw data for a standardizing model: said so
    set_fast(at, ["onnxruntime", "reference"], [1])
    at.button(key="measure_run").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    stored = stored_runs(store)
    assert set(stored["backend"]) == {"onnxruntime", "reference"} and stored["run_id"].nunique() == 1
    assert set(stored["dataset"]) == {"jets_synthetic (synthetic)"} and (stored["status"] == "ok").all()
    assert (stored["n_samples"] == FAST["measure_samples"]).all()
    rows = table_with(at, "backend", "batch_size", "status")
    assert sorted(rows["backend"]) == ["onnxruntime", "reference"] and rows["batch_size"].tolist() == [1, 1]
    assert stored["run_id"].iloc[0] in at.success[0].value
    assert {link.proto.page for link in at.get("page_link")} >= {"tradeoffs", "runs"}
    at.switch_page("app_pages/runs.py").run()  # the other pages read the new run
    assert not at.exception and set(table_with(at, "run_id", "backend")["run_id"]) == set(stored["run_id"])


@pytest.mark.slow
def test_measure_an_uploaded_model_on_an_uploaded_csv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "results"
    monkeypatch.setenv("YUKTI_RESULTS_DIR", str(store))
    at = open_measure()
    at.radio(key="measure_model_source").set_value("upload").run()
    assert not at.exception and any("Upload an .onnx file" in i.value for i in at.info)
    at.file_uploader(key="measure_model_file").set_value(("bad.onnx", b"garbage", ONNX_MIME)).run()
    assert not at.exception and "bad.onnx" in at.error[0].value and "not a valid ONNX model" in at.error[0].value
    at.file_uploader(key="measure_model_file").set_value(("tiny net.onnx", linear_onnx({"x": 3}), ONNX_MIME)).run()
    assert not at.exception and not at.error
    # no evaluation data with a bare ONNX file: random inputs are the default
    assert at.radio(key="measure_data_source").value == "default"
    assert at.radio(key="measure_data_source").options[0].startswith("random inputs")
    at.radio(key="measure_data_source").set_value("upload").run()
    wide = table(["a", "b", "b"], n_features=4).to_csv(index=False).encode()
    at.file_uploader(key="measure_data_file").set_value(("wide.csv", wide, "text/csv")).run()
    assert not at.exception and "does not fit" in at.error[0].value and ".npz holding an array X" in at.error[0].value
    assert not has_measure_button(at)  # nothing to measure until the data fits
    frame = table(["sig", "bkg", "bkg", "sig", "bkg", "bkg"])
    csv = frame.to_csv(index=False).encode()
    at.file_uploader(key="measure_data_file").set_value(("my jets.csv", csv, "text/csv")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="measure_target").value == "target"  # the label column, guessed
    assert at.selectbox(key="measure_target").options == [data.NO_LABELS, "f0", "f1", "f2", "target"]
    shown = dict(zip(*table_with(at, "item", "value").T.values))
    assert shown["class 0: bkg"] == "4" and shown["class 1: sig"] == "2" and shown["input 'x'"].startswith("(3,)")
    set_fast(at, ["onnxruntime"], [1, 64])
    at.button(key="measure_run").click().run()
    assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
    stored = stored_runs(store)
    assert set(stored["model"]) == {data.upload_name("tiny net.onnx")}
    assert set(stored["dataset"]) == {data.upload_name("my jets.csv", fallback="data")}
    assert sorted(stored["batch_size"]) == [1, 64] and stored["auc"].notna().all()  # labelled: AUC measured
    assert table_with(at, "backend", "batch_size", "status")["batch_size"].tolist() == [1, 64]


@pytest.mark.slow
def test_a_dataset_whose_file_is_missing_shows_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YUKTI_DATA_DIR", str(tmp_path / "no-data"))
    monkeypatch.chdir(tmp_path)  # ./data and ../shared/data hold nothing either
    at = open_measure()
    at.radio(key="measure_model_source").set_value("upload").run()
    at.file_uploader(key="measure_model_file").set_value(("net.onnx", linear_onnx({"x": 16}), ONNX_MIME)).run()
    at.radio(key="measure_data_source").set_value("name").run()
    at.selectbox(key="measure_dataset").set_value("hls4ml_jets_150p").run()
    assert not at.exception
    assert "hls4ml_jets_150p" in at.error[0].value and "no hls4ml 150-particle jet files" in at.error[0].value
    at.selectbox(key="measure_dataset").set_value("jets_synthetic").run()  # 16 features: fits this model
    assert not at.exception and not at.error and has_measure_button(at)
