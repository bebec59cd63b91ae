"""`data=` in any form a user holds (yukti.datasets.as_dataset), through benchmark, choose, scan and
the CLI: a Dataset, a name, a table file, (X, y), X, {input name: array}, a DataFrame, torch tensors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti import datasets
from yukti.cli import main

QUICK = {"batch_sizes": [1], "store": False}


def _quick():
    return {**QUICK, "policy": yukti.TimingPolicy(time_budget_s=0.02, min_calls=5)}


@pytest.fixture(scope="module")
def jets(jet_dnn):
    return jet_dnn.data.X[:1500], jet_dnn.data.y[:1500]


@pytest.fixture(scope="module")
def from_onnx(jet_dnn):
    return yukti.load(jet_dnn.onnx_bytes, name="jet_dnn_from_onnx")  # no data of its own


def test_each_form_becomes_a_dataset(jets, tmp_path):
    X, y = jets
    torch = pytest.importorskip("torch")
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(16)]).assign(label=np.array(list("gqWZt"))[y])
    frame.to_parquet(tmp_path / "jets.parquet")
    frame.to_csv(tmp_path / "jets.csv", index=False)
    forms = {
        "(X, y)": ((X, y), {}), "torch (X, y)": ((torch.from_numpy(X), torch.from_numpy(y)), {}),
        "DataFrame": (frame, {"target": "label"}), "parquet": (tmp_path / "jets.parquet", {"target": "label"}),
        "csv path": (str(tmp_path / "jets.csv"), {"target": "label"}),
    }
    for form, (data, kwargs) in forms.items():
        dataset = datasets.as_dataset(data, **kwargs)
        np.testing.assert_allclose(dataset.X, X, err_msg=form)
        assert dataset.y is not None and len(dataset.y) == len(X), form
    named = datasets.as_dataset((X, np.array(list("gqWZt"))[y]))
    assert named.class_names == ("W", "Z", "g", "q", "t")  # sorted names; the labels follow them
    assert np.array_equal(np.array(named.class_names)[named.y], np.array(list("gqWZt"))[y])
    bare = datasets.as_dataset(torch.from_numpy(X))
    assert bare.y is None and np.array_equal(bare.X, X)
    assert datasets.as_dataset("jets_synthetic").name == "jets_synthetic"
    same = datasets.as_dataset(named)
    assert same is named


@pytest.mark.parametrize("data, says", [
    (object(), "not a form Yukti reads"),
    ("no_such_dataset_or_file", "unknown dataset 'no_such_dataset_or_file'"),
    (({"a": 1},), "not a form"),
])
def test_unknown_forms_list_what_is_accepted(data, says):
    with pytest.raises(yukti.YuktiError, match=says) as info:
        datasets.as_dataset(data)
    assert "(X, y)" in str(info.value) or "dataset name" in str(info.value)


def test_labels_must_match_the_samples(jets):
    X, y = jets
    with pytest.raises(yukti.InputError, match="1500 samples but 10 labels"):
        datasets.as_dataset((X, y[:10]))
    with pytest.raises(yukti.InputError, match="1-D"):
        datasets.as_dataset((X, y[:, None]))


def test_benchmark_on_an_onnx_model_with_x_y(from_onnx, jets):
    X, y = jets
    row = yukti.benchmark(from_onnx, backends=["onnxruntime"], data=(X, y), **_quick()).iloc[0]
    assert row["status"] == "ok" and row["n_samples"] == len(X) and 0.5 < row["auc"] <= 1.0
    assert row["signal_class"] == "4"  # integer labels: the last class is the signal by default
    unlabelled = yukti.benchmark(from_onnx, backends=["onnxruntime"], data=X, **_quick()).iloc[0]
    assert unlabelled["status"] == "ok" and pd.isna(unlabelled["auc"]) and unlabelled["argmax_agreement"] == 1.0


def test_benchmark_with_a_dataframe_and_target(from_onnx, jets):
    X, y = jets
    frame = pd.DataFrame(X).assign(label=y)
    row = yukti.benchmark(from_onnx, backends=["onnxruntime"], data=frame, target="label", signal=4, **_quick()).iloc[0]
    labelled = yukti.benchmark(from_onnx, backends=["onnxruntime"], data=(X, y), signal=4, **_quick()).iloc[0]
    assert row["auc"] == pytest.approx(labelled["auc"])


def test_choose_reads_x_y_too(from_onnx, jets):
    choice = yukti.choose(from_onnx, backends=["onnxruntime"], data=jets, max_auc_drop=0.5, store=False,
                          policy=yukti.TimingPolicy(time_budget_s=0.02, min_calls=5), max_eval_samples=500)
    assert choice.winner is not None and choice.winner.backend == "onnxruntime"


def _two_input_model() -> yukti.Model:
    weight = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "W"], ["h"], name="mm"), helper.make_node("Add", ["h", "b"], ["y"], name="add"),
         helper.make_node("Softmax", ["y"], ["p"], name="softmax")],
        "two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]), helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["N", 3])], [numpy_helper.from_array(weight, "W")],
    )
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), name="two_inputs")


def test_multi_input_models_take_named_arrays(isolated_yukti_dirs):
    model = _two_input_model()
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((400, 4)).astype(np.float32), rng.standard_normal((400, 3)).astype(np.float32)
    y = rng.integers(0, 3, 400)
    row = yukti.benchmark(model, backends=["onnxruntime"], data=({"b": b, "a": a}, y), **_quick()).iloc[0]
    assert row["status"] == "ok" and row["n_samples"] == 400 and row["argmax_agreement"] == 1.0 and not pd.isna(row["auc"])
    with pytest.raises(yukti.InputError, match=r"missing \['b'\]"):
        yukti.benchmark(model, backends=["onnxruntime"], data={"a": a}, **_quick())
    with pytest.raises(yukti.InputError, match="has 2 inputs"):
        yukti.benchmark(model, backends=["onnxruntime"], data=a, **_quick())


def test_cli_bench_reads_a_table_with_its_target(capsys, tmp_path, jets):
    X, y = jets
    pd.DataFrame(X, columns=[f"f{i}" for i in range(16)]).assign(label=y).to_parquet(tmp_path / "jets.parquet")
    target = tmp_path / "rows.json"
    code = main(["bench", "jet_dnn", "-b", "onnxruntime", "--batch", "1", "--time-budget", "0.02", "--min-calls", "5",
                 "--data", str(tmp_path / "jets.parquet"), "--target", "label", "--signal", "4", "--json", str(target),
                 "--quiet", "--no-store"])
    assert code == 0, capsys.readouterr().out
    row = json.loads(target.read_text())[0]
    assert row["dataset"] == "jets" and row["n_samples"] == len(X) and row["auc"] > 0.5


@pytest.mark.slow
def test_a_two_input_tagger_is_benchmarked_end_to_end_on_every_backend(isolated_yukti_dirs):
    """jet summary + constituents as two inputs (zoo jet_fusion), its data given as ({name: array}, y),
    on every available backend that does not refuse it by design: each row measured and as good as the
    reference (fixed point at the model's declared firmware precision)."""
    model = yukti.zoo.get("jet_fusion")
    jet, constituents = model.data.inputs
    data = ({"constituents": constituents[:1200], "jet": jet[:1200]}, model.data.y[:1200])  # any order: by name
    backends = []
    for info in yukti.backends():
        support = yukti.runner_class(info.name).supports(model) if info.available else None
        if support:
            backends.append(info.name)
        elif support is not None:
            assert support.by_design, f"{info.name} refuses the two-input tagger: {support.describe()}"
    assert {"cpp", "onnxruntime", "reference", "torch"} <= set(backends)
    options = {b: model.meta["fixed_point"] for b in backends if yukti.runner_class(b).fixed_point}
    frame = yukti.benchmark(model, data=data, backends=backends, options=options, batch_sizes=[1, 64], store=False,
                            policy=yukti.TimingPolicy(time_budget_s=0.02, min_calls=3, warmup_calls=1, warmup_s=0.0))
    assert set(frame["backend"]) == set(backends) and (frame["status"] == "ok").all(), frame[["backend", "status"]]
    assert (frame["n_samples"] == 1200).all()
    reference_auc = frame["reference_auc"].iloc[0]
    for row in frame.itertuples():
        if yukti.runner_class(row.backend).fixed_point:
            assert row.argmax_agreement >= 0.95 and row.auc > reference_auc - 0.02, row
        else:
            assert row.argmax_agreement == 1.0 and abs(row.auc - reference_auc) < 1e-4, row
