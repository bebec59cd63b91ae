"""The cpp runner's own input paths: the batch-1 fast path, the bridge with many tensors (column
input of a wide model), and never an output after the compiled NaN/inf check refused a call."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available,
                                reason=f"cpp backend unavailable: {yukti.registry.backend_info('cpp').reason}")

WIDE = 300  # features: above the bridge's on-stack tensor count and the old 256-tensor limit


def _opset(graph):
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


@pytest.fixture(scope="module")
def wide():
    """A 300-feature dense layer y = x @ W, and W."""
    weight = np.random.default_rng(3).standard_normal((WIDE, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], "wide",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [numpy_helper.from_array(weight, "W")],
    )
    return yukti.load(_opset(graph)), weight


@pytest.mark.parametrize("use_bridge", [True, False], ids=["bridge", "ctypes"])
def test_column_input_of_a_300_feature_model(wide, use_bridge):
    model, weight = wide
    run = yukti.runner("cpp", model, use_bridge=use_bridge)
    assert run.info["call_path"].startswith("bridge" if use_bridge else "ctypes")
    x = np.random.default_rng(4).standard_normal((37, WIDE)).astype(np.float32)
    columns = [np.ascontiguousarray(x[:, i]) for i in range(WIDE)]
    out = run.columns(columns)
    np.testing.assert_array_equal(out, run(x))
    np.testing.assert_allclose(out, x.astype(np.float64) @ weight, rtol=1e-4, atol=1e-4)
    columns[283] = columns[283].copy()
    columns[283][11] = np.inf
    with pytest.raises(yukti.InputError, match=r"column 283 .* \(inf\) at row 11"):
        run.columns(columns)


def test_many_inputs_through_the_bridge():
    """21 tensors per call (20 inputs, 1 output): the bridge's heap path for rows, not only columns."""
    n = 20
    graph = helper.make_graph(
        [helper.make_node("Concat", [f"x{i}" for i in range(n)], ["y"], axis=1, name="cat")], "many",
        [helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, ["N", 1]) for i in range(n)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
    )
    run = yukti.runner("cpp", yukti.load(_opset(graph)))
    assert run.info["call_path"] == "bridge"
    x = np.random.default_rng(5).standard_normal((9, n)).astype(np.float32)
    np.testing.assert_array_equal(run([x[:, i:i + 1] for i in range(n)]), x)
    inputs = {f"x{i}": x[:, i:i + 1].copy() for i in range(n)}
    inputs["x17"][4, 0] = np.nan
    with pytest.raises(yukti.InputError, match=r"x17.*non-finite value \(nan\) at index \(4, 0\)"):
        run(inputs)


@pytest.fixture(scope="module", params=[True, False], ids=["bridge", "ctypes"])
def jet_runner(request, jet_dnn):
    return yukti.runner("cpp", jet_dnn, use_bridge=request.param)


def test_masked_array_with_nan_is_refused_not_garbage(jet_runner, jet_dnn):
    x = jet_dnn.data.X[:4].copy()
    hidden = np.zeros_like(x, dtype=bool)
    hidden[2, 7] = True
    x[2, 7] = np.nan
    for batch in (1, 4):  # batch 1 would take the fast path if a masked array slipped into it
        with pytest.raises(yukti.InputError, match=r"masked array.*filled"):
            jet_runner(np.ma.masked_array(x[:batch] if batch > 1 else x[2:3], mask=hidden[:batch] if batch > 1 else hidden[2:3]))
    clean = np.ma.masked_array(x, mask=hidden).filled(0.0)
    np.testing.assert_array_equal(jet_runner(clean), yukti.runner("cpp", jet_dnn)(clean))


def test_no_output_after_the_compiled_check_refused(jet_runner, jet_dnn, monkeypatch):
    """Defence in depth: were the Python re-check to pass what the compiled check refused (another
    thread writing the array in between), the call still raises instead of returning the
    uninitialised output buffer."""
    x = jet_dnn.data.X[:3].copy()
    x[1, 4] = np.nan
    real_validate = jet_dnn.validate_inputs

    def lenient(inputs, *, check_finite=True):  # the Python check, blind to NaN
        return real_validate(inputs, check_finite=False)

    monkeypatch.setattr(jet_dnn, "validate_inputs", lenient)
    # the fast path (batch 1 and 3) and the validated path; the index is the flat one in the batch
    for value, flat_index in ((x[1:2], 4), (x, 20), ({"input": x}, 20)):
        with pytest.raises(yukti.InputError, match=rf"compiled check found a non-finite input value at flat index {flat_index}\b"):
            jet_runner(value)


def test_column_containers_users_pass(jet_runner, jet_dnn):
    x = jet_dnn.data.X[:5]
    expected = jet_runner(x)
    as_lists = [x[:, i].tolist() for i in range(16)]  # Python floats of float32 values: converted exactly
    np.testing.assert_array_equal(jet_runner.columns(as_lists), expected)
    np.testing.assert_array_equal(jet_runner.columns(x.T), expected)  # a (features, batch) array
    masked = [np.ma.masked_array(x[:, i]) for i in range(16)]
    with pytest.raises(yukti.InputError, match="masked array"):
        jet_runner.columns(masked)
    zero_d = [np.float32(1.0)] * 16
    with pytest.raises(yukti.InputError, match="1-D array; got shape ()"):
        jet_runner.columns(zero_d)
    for bad in (3.0, None, "abcdefghijklmnop"):
        with pytest.raises(yukti.InputError, match="columns"):
            jet_runner.columns(bad)


def test_columns_on_an_unprepared_runner():
    with pytest.raises(yukti.YuktiError, match="not prepared"):
        yukti.runner_class("cpp")().columns([np.zeros(3, np.float32)])


def test_inputs_the_fast_path_must_not_take_go_the_validated_way(jet_runner, jet_dnn):
    """The batch-1 fast path hands a float32 array straight to the bridge; every other array must
    reach the same numbers through the validated path (copied, converted) or be refused, never be
    read as raw floats: non-contiguous, Fortran-ordered, byte-swapped, float64 and wrong shapes."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16)).astype(np.float32)
    expected = jet_runner(np.ascontiguousarray(x))
    wide = np.zeros((4, 32), np.float32)
    wide[:, ::2] = x
    for variant in (wide[:, ::2], np.asfortranarray(x), x.astype(">f4"), x.astype(np.float64), x[::-1][::-1]):
        np.testing.assert_allclose(jet_runner(variant), expected, rtol=0, atol=1e-6)
    for one in (x[:1], wide[:1, ::2], x[:1].astype(">f4")):
        np.testing.assert_allclose(jet_runner(one), expected[:1], rtol=0, atol=1e-6)
    with pytest.raises(yukti.InputError, match="16"):
        jet_runner(np.zeros((1, 15), np.float32))
    with pytest.raises(yukti.InputError):
        jet_runner(np.zeros((0, 16), np.float32))


def test_bridge_call1_checks_its_arguments(jet_dnn):
    jet_runner = yukti.runner("cpp", jet_dnn, use_bridge=True)
    call1 = jet_runner._bridge.call1
    x, y = np.zeros((1, 16), np.float32), np.empty((1, 5), np.float32)
    with pytest.raises(TypeError):
        call1(0, x, y, 1)
    with pytest.raises(ValueError, match="threads >= 1"):
        call1(jet_runner._fast[3], x, y, 1, 0)
    with pytest.raises((ValueError, BufferError)):  # a read-only output is refused before any call
        ro = np.empty((1, 5), np.float32)
        ro.flags.writeable = False
        call1(jet_runner._fast[3], x, ro, 1, 1)
