"""Model.validate_inputs on what users actually pass: masked arrays, ml_dtypes and torch dtypes numpy
lacks, dtypes that are no numbers, nested Python lists, unusual memory layouts.

Every runner shares this conversion; tests/runners/test_input_fuzz.py checks that each backend's
answers agree with it.
"""

from __future__ import annotations

import ml_dtypes  # onnx's own dependency: bfloat16 and float8 for numpy
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti


def _model(dtype: int = TensorProto.FLOAT, features: int = 4) -> yukti.Model:
    """y = x @ W for one (N, features) input of the given ONNX element type."""
    np_dtype = helper.tensor_dtype_to_np_dtype(dtype)
    weight = numpy_helper.from_array(np.arange(features * 3).reshape(features, 3).astype(np_dtype), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "inputs",
        [helper.make_tensor_value_info("x", dtype, ["N", features])],
        [helper.make_tensor_value_info("y", dtype, ["N", 3])], [weight],
    )
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def _two_inputs() -> yukti.Model:
    graph = helper.make_graph(
        [helper.make_node("Add", ["a", "b"], ["y"], name="add")], "two",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]), helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
    )
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


@pytest.fixture(scope="module")
def model() -> yukti.Model:
    return _model()


@pytest.fixture
def x() -> np.ndarray:
    return np.linspace(-2, 2, 12, dtype=np.float32).reshape(3, 4)


def _one(model: yukti.Model, value) -> np.ndarray:
    (array,) = model.validate_inputs(value)
    assert type(array) is np.ndarray and array.dtype == np.float32 and array.flags.c_contiguous
    return array


# -- masked arrays ---------------------------------------------------------------------------------


@pytest.mark.parametrize("masked", [
    lambda x: np.ma.masked_array(np.where(np.eye(3, 4, dtype=bool), np.nan, x), mask=np.eye(3, 4, dtype=bool)),
    lambda x: np.ma.masked_array(x, mask=False),
    lambda x: np.ma.masked_invalid(np.full_like(x, np.inf)),
], ids=["nan-under-the-mask", "nothing-masked", "masked-invalid"])
def test_masked_arrays_are_refused_with_the_fill_to_write(model, x, masked):
    with pytest.raises(yukti.InputError, match=r"masked array.*x\.filled\(") as caught:
        model.validate_inputs(masked(x))
    assert "np.ma.getdata" in str(caught.value)
    with pytest.raises(yukti.InputError, match="masked array"):  # also inside a list or dict
        model.validate_inputs({"x": masked(x)})


def test_filled_masked_array_is_accepted(model, x):
    masked = np.ma.masked_array(np.where(np.eye(3, 4, dtype=bool), np.nan, x), mask=np.eye(3, 4, dtype=bool))
    np.testing.assert_array_equal(_one(model, masked.filled(0.0)), np.where(np.eye(3, 4, dtype=bool), 0, x))


# -- dtypes numpy lacks, and dtypes that are not numbers -------------------------------------------


@pytest.mark.parametrize("name", ["bfloat16", "float8_e4m3fn", "float8_e5m2"])
def test_ml_dtypes_floats_widen_exactly(model, x, name):
    narrow = x.astype(getattr(ml_dtypes, name))
    converted = _one(model, narrow)
    np.testing.assert_array_equal(converted, narrow.astype(np.float32))  # every value kept
    assert np.array_equal(converted.astype(narrow.dtype).view(np.uint8), narrow.view(np.uint8))


def test_bfloat16_that_does_not_fit_the_input_dtype_is_named(x):
    int_model = _model(TensorProto.INT64)
    with pytest.raises(yukti.InputError, match=r"expects dtype int64; got bfloat16 values"):
        int_model.validate_inputs((x + 0.5).astype(ml_dtypes.bfloat16))
    assert int_model.validate_inputs(np.round(x).astype(ml_dtypes.bfloat16))[0].dtype == np.int64


def test_bfloat16_nan_is_caught_after_widening(model, x):
    bad = x.astype(ml_dtypes.bfloat16)
    bad[1, 2] = np.nan
    with pytest.raises(yukti.InputError, match=r"non-finite .* index \(1, 2\)"):
        model.validate_inputs(bad)


@pytest.mark.parametrize("value, dtype_text, hint", [
    (lambda x: x.astype(object), "object", "arbitrary Python objects"),
    (lambda x: x.astype(np.complex64), "complex64", r"x\.real"),
    (lambda x: x.astype(str), "<U", "strings are not numbers"),
    (lambda x: x.astype(bytes), "S", "strings are not numbers"),
    (lambda x: np.zeros(x.shape, "datetime64[s]"), r"datetime64\[s\]", "dates"),
    (lambda x: np.zeros(x.shape, "timedelta64[ms]"), r"timedelta64\[ms\]", "np.timedelta64"),
    (lambda x: np.zeros(x.shape, "V4"), "V4", "void"),
    (lambda x: np.zeros(x.shape, [("energy", "f4")]), "energy", "structured_to_unstructured"),
], ids=["object", "complex", "unicode", "bytes", "datetime", "timedelta", "void", "structured"])
def test_non_numeric_dtypes_are_named_with_what_to_do(model, x, value, dtype_text, hint):
    with pytest.raises(yukti.InputError, match=rf"float32.*got dtype .*{dtype_text}.*which does not convert") as caught:
        model.validate_inputs(value(x))
    assert caught.match(hint)


# -- Python lists ----------------------------------------------------------------------------------


def test_nested_list_is_one_array_rounded_to_float32(model):
    (array,) = model.validate_inputs([[0.1] * 4])
    assert array.shape == (1, 4) and array.dtype == np.float32
    np.testing.assert_array_equal(array, np.array([[0.1] * 4], dtype=np.float32))
    rows = [[1, 2.5, -3, 4], (5, 6, 7, 8)]  # ints and floats mixed, tuples as rows
    np.testing.assert_array_equal(_one(model, rows), np.array(rows, dtype=np.float32))
    np.testing.assert_array_equal(_one(model, ((1, 2, 3, 4),)), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(_one(model, [[np.float32(0.5), np.int8(3), True, 2]]), [[0.5, 3, 1, 2]])


def test_nested_list_keeps_float64_inputs_exact():
    model64 = _model(TensorProto.DOUBLE)
    (array,) = model64.validate_inputs([[0.1, 0.2, 0.3, 0.4]])
    assert array.dtype == np.float64 and array[0, 0] == 0.1


def test_nested_list_of_integers_follows_the_array_rules():
    int_model = _model(TensorProto.INT64)
    assert int_model.validate_inputs([[1, 2, 3, 4]])[0].dtype == np.int64
    with pytest.raises(yukti.InputError, match="expects dtype int64; got float64 values"):
        int_model.validate_inputs([[1.5, 2, 3, 4]])
    with pytest.raises(yukti.InputError, match="expects dtype float32; got int64 values"):
        _model().validate_inputs([[2**24 + 1, 0, 0, 0]])  # float32 cannot hold it: refused, as for an array


@pytest.mark.parametrize("value, match", [
    ([[0.1] * 4, [0.1] * 3], "not one rectangular array"),
    ([[0.1, None, 0.3, 0.4]], "non-numbers"),
    ([["a", "b", "c", "d"]], "non-numbers"),
    ([[2**70, 0, 0, 0]], "non-numbers"),
    ([[1e39, 0, 0, 0]], "outside the range of float32"),
    ([[float("nan"), 0, 0, 0]], r"non-finite value \(nan\) at index \(0, 0\)"),
    ([0.1] * 4, r"x\[None\]"),
    ([[[0.1] * 4]], "drop the outer list"),
    ([], "expects 2 dimensions; got shape \\(0,\\)"),
    (None, "expects an array; got None"),
    ("0.1", "expects a numeric array; got a str"),
    (b"\x00" * 16, "expects a numeric array; got a bytes"),
    (iter([[0.1] * 4]), "numpy reads as Python objects"),
], ids=["ragged", "none-inside", "strings-inside", "int-beyond-64-bits", "overflow", "nan", "missing-batch-axis",
        "extra-outer-list", "empty", "none", "str", "bytes", "iterator"])
def test_lists_and_non_arrays_refused_clearly(model, value, match):
    with pytest.raises(yukti.InputError, match=match):
        model.validate_inputs(value)


def test_list_of_arrays_is_a_sequence_of_inputs(model, x):
    np.testing.assert_array_equal(_one(model, [x]), x)
    np.testing.assert_array_equal(_one(model, (x,)), x)
    with pytest.raises(yukti.InputError, match=r"expects 1 input\(s\).*got 2"):
        model.validate_inputs([x, x])
    two = _two_inputs()
    a, b = two.validate_inputs([[[1, 2]], [[3, 4]]])  # a list per input, each a nested list
    np.testing.assert_array_equal(a, [[1, 2]])
    np.testing.assert_array_equal(b, [[3, 4]])
    with pytest.raises(yukti.InputError, match="share the batch size"):
        two.validate_inputs({"a": [[1, 2]], "b": [[3, 4], [5, 6]]})
    with pytest.raises(yukti.InputError, match=r"missing \['b'\], unexpected \['c'\]"):
        two.validate_inputs({"a": [[1, 2]], "c": [[3, 4]]})


# -- torch tensors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float8_e4m3fn", "float8_e5m2", "float64", "int32", "bool"])
def test_torch_tensors_of_every_dtype_convert_exactly(model, x, dtype):
    torch = pytest.importorskip("torch")
    tensor = torch.from_numpy(x).to(getattr(torch, dtype))
    converted = _one(model, tensor)
    np.testing.assert_array_equal(converted, tensor.to(torch.float32).numpy())


def test_torch_tensors_that_are_no_plain_array_are_refused(model, x):
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(_one(model, torch.from_numpy(x).requires_grad_()), x)
    np.testing.assert_array_equal(_one(model, torch.from_numpy(x).t().contiguous().t()), x)  # column-major strides
    with pytest.raises(yukti.InputError, match="sparse.*to_dense"):
        model.validate_inputs(torch.from_numpy(x).to_sparse())
    with pytest.raises(yukti.InputError, match="torch tensor of dtype torch.float32 on meta"):
        model.validate_inputs(torch.empty(3, 4, device="meta"))
    with pytest.raises(yukti.InputError, match="complex"):
        model.validate_inputs(torch.from_numpy(x).to(torch.complex64))


# -- shapes and memory layouts ---------------------------------------------------------------------


def test_zero_dimensional_inputs_are_refused(model):
    for value in (np.array(1.0, np.float32), np.float32(1.0), 1.0):
        with pytest.raises(yukti.InputError, match=r"expects 2 dimensions; got shape \(\)"):
            model.validate_inputs(value)
    torch = pytest.importorskip("torch")
    with pytest.raises(yukti.InputError, match=r"expects 2 dimensions; got shape \(\)"):
        model.validate_inputs(torch.tensor(1.0))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("layout", [
    np.asfortranarray,
    lambda x: x[::-1],
    lambda x: x[:, ::-1],
    lambda x: np.ascontiguousarray(np.vstack([x, x])[::2][:3]),
    lambda x: np.vstack([x, x])[::2],
    lambda x: x.astype(">f4"),
    lambda x: x.astype(">f8"),
    lambda x: np.asmatrix(x),
    lambda x: np.broadcast_to(x[:1], x.shape),
], ids=["fortran", "negative-rows", "negative-columns", "sliced", "strided", "big-endian-f4", "big-endian-f8", "matrix",
        "broadcast"])
def test_layouts_give_the_same_values(model, x, layout):
    value = layout(x)
    np.testing.assert_array_equal(_one(model, value), np.asarray(value, dtype=np.float32))


def test_read_only_and_memmap_inputs(model, x, tmp_path):
    frozen = x.copy()
    frozen.setflags(write=False)
    assert _one(model, frozen) is frozen  # already valid: no copy, and never written
    path = tmp_path / "x.f32"
    x.tofile(path)
    mapped = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
    np.testing.assert_array_equal(_one(model, mapped), x)


def test_inputs_are_never_modified(model, x):
    for value in (x, x.astype(np.float64), np.asfortranarray(x), x.astype(">f4")):
        before = value.copy()
        model.validate_inputs(value)
        assert value.dtype == before.dtype and np.array_equal(value, before)
