"""Property-based fuzzing (hypothesis) of what every registered backend is handed.

Property: given any input, a runner either returns what the reference backend returns on what
that input means (within the backend's tolerance; fixed-point backends: finite outputs of the
right shape and dtype), or raises `yukti.InputError`. Never another exception, never an output
computed from garbage, never a changed input. What an input means is worked out here, from how it
was made, independently of `Model.validate_inputs`: random batch sizes, dtypes (numpy, ml_dtypes,
torch), memory layouts, NaN/inf placements, shapes, containers (bare, list, tuple, dict, torch
tensor, nested Python list, masked array, dicts with wrong or missing keys).

Budget: derandomized (CI reproducible), a fixed number of examples per backend; backends slow to
prepare get fewer, and every runner is prepared once per module (a warm artifact cache makes that
a load when the contract tests ran first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import ml_dtypes  # onnx's own dependency: bfloat16 and float8 for numpy
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import yukti

try:  # torch tensors are one of the containers fuzzed; without torch, those cases pass arrays
    import torch
except ImportError:  # pragma: no cover
    torch = None

BACKENDS = yukti.registry.names()
EXAMPLES = 100
# Each is prepared once here too, but their calls cost milliseconds (Keras, the hls4ml emulation,
# the AOTInductor container) and a cold prepare tens of seconds: a few examples each.
FEW_EXAMPLES = {"hls4ml": 15, "keras": 15, "torch_aot": 15}
# Fast to prepare on a model of their own (a cold torch_aot or hls4ml build of the two-input model
# costs 20 s each); the multi-input containers are the shared Model.validate_inputs either way.
TWO_INPUT_BACKENDS = [b for b in BACKENDS if b not in FEW_EXAMPLES]
# The contract's tolerance against the reference for a dense network (tests/runners/test_contract.py).
DENSE_TOLERANCE = 1e-5


def _settings(backend: str) -> settings:
    return settings(
        max_examples=FEW_EXAMPLES.get(backend, EXAMPLES), deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


def _require(backend: str) -> None:
    info = yukti.registry.backend_info(backend)
    if not info.available:
        pytest.skip(f"backend {backend!r} is not available here: {info.reason}")


# -- what an input means ---------------------------------------------------------------------------

# dtype -> (make the typed array from float32 data, what it means as float32 or None when refused)
_INTEGER_MEANING = lambda typed: typed.astype(np.float32)  # noqa: E731  small integers: exact in float32


DTYPES: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray | None]]] = {
    "float32": (lambda d: d, lambda t: t),
    "float64": (lambda d: d.astype(np.float64), lambda t: t.astype(np.float32)),
    # float32 values moved off the float32 grid: a lossy narrowing, refused
    "float64_lossy": (lambda d: d.astype(np.float64) + 1e-9, lambda t: None),
    "float16": (lambda d: d.astype(np.float16), lambda t: t.astype(np.float32)),
    "bfloat16": (lambda d: d.astype(ml_dtypes.bfloat16), lambda t: t.astype(np.float32)),
    "float8_e4m3fn": (lambda d: d.astype(ml_dtypes.float8_e4m3fn), lambda t: t.astype(np.float32)),
    "int32": (lambda d: np.round(d).astype(np.int32), _INTEGER_MEANING),
    "uint8": (lambda d: np.clip(np.round(d), 0, 255).astype(np.uint8), _INTEGER_MEANING),
    "bool": (lambda d: d > 0, _INTEGER_MEANING),
    ">f4": (lambda d: d.astype(">f4"), lambda t: t.astype(np.float32)),
    ">f8": (lambda d: d.astype(">f8"), lambda t: t.astype(np.float32)),
    "longdouble": (lambda d: d.astype(np.longdouble), lambda t: t.astype(np.float32)),
    "complex64": (lambda d: d.astype(np.complex64), lambda t: None),
    "object": (lambda d: d.astype(object), lambda t: None),
    "str": (lambda d: d.astype(str), lambda t: None),
    "datetime64": (lambda d: np.zeros(d.shape, "datetime64[s]"), lambda t: None),
    "structured": (lambda d: np.zeros(d.shape, [("energy", "f4")]), lambda t: None),
}
NO_NAN = {"int32", "uint8", "bool", "datetime64", "structured"}  # a NaN placed in the data cannot survive these
TORCH_DTYPES = {"float32", "float64", "float16", "int32", "uint8", "bool"}  # numpy dtypes torch.from_numpy takes
# Nested lists of these hold Python numbers (floats are rounded to float32, integers must fit exactly).
LIST_DTYPES = {"float32", "float64", "float64_lossy", "float16", "int32", "uint8", "bool", ">f4", ">f8"}


def _layout(array: np.ndarray, kind: str) -> np.ndarray:
    """The same values in other memory (broadcast: the first row repeated, its meaning too)."""
    if kind == "fortran":
        return np.asfortranarray(array)
    if kind == "strided":
        wide = np.zeros((2 * array.shape[0], 2 * array.shape[1]), array.dtype)
        wide[::2, ::2] = array
        return wide[::2, ::2]
    if kind == "negative":
        return array[::-1].copy()[::-1]
    if kind == "readonly":
        frozen = array.copy()
        frozen.setflags(write=False)
        return frozen
    if kind == "broadcast":
        return np.broadcast_to(array[:1], array.shape)
    if kind == "unaligned" and not array.dtype.hasobject:  # one byte off: np.frombuffer of a packet, say
        raw = bytearray(1 + array.nbytes)
        raw[1:] = np.ascontiguousarray(array).tobytes()
        return np.frombuffer(raw, array.dtype, offset=1).reshape(array.shape)
    return array


def _shape(array: np.ndarray, kind: str) -> np.ndarray:
    return {"ok": array, "fewer_features": array[:, :-1], "no_batch_axis": array[0], "extra_axis": array[None],
            "empty_batch": array[:0]}[kind]


def _nested_list_meaning(typed: np.ndarray) -> np.ndarray | None:
    """Python floats round to float32 (refused when out of its range); integers must fit exactly."""
    numbers = np.asarray(typed.tolist())
    with np.errstate(over="ignore", invalid="ignore"):
        meaning = numbers.astype(np.float32)
    if numbers.dtype.kind == "f":
        return None if np.any(np.isfinite(numbers) & ~np.isfinite(meaning)) else meaning
    return meaning if np.array_equal(meaning.astype(numbers.dtype), numbers) else None


@dataclass
class Case:
    value: Any
    # The float32 input(s) the value stands for, as the reference backend takes them (an array, or a
    # list in input order); None: the runner must raise InputError.
    meaning: np.ndarray | list[np.ndarray] | None
    how: str

    def __repr__(self) -> str:  # what hypothesis prints for a failing example
        return f"Case({self.how}; {'InputError expected' if self.meaning is None else 'an answer expected'})"


LAYOUTS = ["C", "fortran", "strided", "negative", "readonly", "broadcast", "unaligned"]
SHAPES = ["ok", "fewer_features", "no_batch_axis", "extra_axis", "empty_batch"]
CONTAINERS = ["bare", "list", "tuple", "dict", "torch", "torch_bfloat16", "nested_list", "masked",
              "dict_wrong_key", "dict_extra_key", "two_arrays", "junk"]
BAD_VALUES = [None, np.nan, np.inf, -np.inf]
JUNK = [None, "0.5", 3.0, b"\x00" * 64, object()]


@dataclass(frozen=True)
class Plan:
    """How one input is made; hypothesis draws these, and `covering_plans` lists one per choice."""

    dtype: str = "float32"
    layout: str = "C"
    shape: str = "ok"
    container: str = "bare"
    batch: int = 3
    scale: float = 1.0
    bad: float | None = None  # placed at a random position when the dtype can hold it
    seed: int = 0  # rows of the data pool, the position of `bad`, the junk value


# Valid choices weighted up, so that about a third of the random cases expect an answer.
plans = st.builds(
    Plan,
    dtype=st.sampled_from(list(DTYPES)), layout=st.sampled_from(LAYOUTS),
    shape=st.sampled_from(["ok"] * 10 + SHAPES[1:]), container=st.sampled_from(CONTAINERS[:7] * 2 + CONTAINERS[7:]),
    batch=st.integers(1, 9), scale=st.sampled_from([1.0, 1e-3, 300.0]),
    bad=st.sampled_from([None] * 8 + BAD_VALUES[1:]), seed=st.integers(0, 2**16),
)


def covering_plans() -> list[Plan]:
    """Every dtype, layout, container, bad shape and non-finite value at least once, each on
    otherwise ordinary input (so that a valid choice is checked against an answer), whatever the
    random draws add."""
    return [
        *(Plan(dtype=d, layout=LAYOUTS[i % len(LAYOUTS)], batch=1 + i % 4, seed=i) for i, d in enumerate(DTYPES)),
        *(Plan(container=c, dtype=("float32", "float64")[i % 2], batch=1 + i % 3, seed=i) for i, c in enumerate(CONTAINERS)),
        *(Plan(shape=shape) for shape in SHAPES[1:]),
        *(Plan(bad=bad, dtype=d, container=c, seed=i)
          for i, (bad, d, c) in enumerate(zip(BAD_VALUES[1:], ("float32", "bfloat16", "float16"), ("bare", "torch", "nested_list")))),
    ]


def build_case(plan: Plan, pool: np.ndarray, name: str) -> Case:
    rng = np.random.default_rng(plan.seed)
    batch = plan.batch
    data = (pool[rng.integers(0, len(pool), batch)] * np.float32(plan.scale)).astype(np.float32)
    if plan.bad is not None and plan.dtype not in NO_NAN:
        data[rng.integers(0, batch), rng.integers(0, data.shape[1])] = plan.bad
    make, means = DTYPES[plan.dtype]
    with np.errstate(over="ignore", invalid="ignore"):
        typed = make(data)
        meaning = means(typed)
    typed = _layout(typed, plan.layout)
    if plan.layout == "broadcast" and meaning is not None:
        meaning = np.broadcast_to(meaning[:1], meaning.shape)
    typed = _shape(typed, plan.shape)

    value: Any = typed
    container = plan.container
    if container == "list":
        value = [typed]
    elif container == "tuple":
        value = (typed,)
    elif container == "dict":
        value = {name: typed}
    elif container == "torch" and torch is not None and plan.dtype in TORCH_DTYPES:
        value = torch.from_numpy(np.ascontiguousarray(typed))
    elif container == "torch_bfloat16" and torch is not None:  # no numpy dtype; widening to float32 is exact
        value = torch.from_numpy(np.ascontiguousarray(_shape(data, plan.shape))).to(torch.bfloat16)
        meaning = value.to(torch.float32).numpy()
    elif container == "nested_list" and plan.dtype in LIST_DTYPES:
        value = typed.tolist()
        meaning = _nested_list_meaning(typed)
    elif container == "masked":  # refused whatever the mask: filling is the caller's decision
        value, meaning = np.ma.masked_array(typed, mask=rng.random(typed.shape) < 0.2), None
    elif container == "dict_wrong_key":
        value, meaning = {f"not_{name}": typed}, None
    elif container == "dict_extra_key":
        value, meaning = {name: typed, "extra": typed}, None
    elif container == "two_arrays":
        value, meaning = [typed, typed], None
    elif container == "junk":
        value, meaning = JUNK[int(rng.integers(0, len(JUNK)))], None
    if plan.shape != "ok" or (meaning is not None and not np.isfinite(meaning).all()):
        meaning = None
    return Case(value, None if meaning is None else np.ascontiguousarray(meaning, np.float32), repr(plan))


def _leaves(value: Any) -> list[np.ndarray]:
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, dict):
        return [a for v in value.values() for a in _leaves(v)]
    if isinstance(value, (list, tuple)):
        return [a for v in value for a in _leaves(v)]
    return []


def _check(run: yukti.Runner, reference: yukti.Runner, case: Case) -> None:
    before = [(leaf, leaf.tobytes()) for leaf in _leaves(case.value)]
    if case.meaning is None:
        with pytest.raises(yukti.InputError):
            run(case.value)
    else:
        out = run(case.value)
        expected = reference(case.meaning)
        outs, refs = (out, expected) if isinstance(out, tuple) else ((out,), (expected,))
        assert len(outs) == len(refs)
        for o, r in zip(outs, refs):
            assert isinstance(o, np.ndarray) and o.dtype == np.float32 and o.shape == r.shape
            assert np.isfinite(o).all()
            if not type(run).fixed_point:
                np.testing.assert_allclose(o, r, rtol=0, atol=DENSE_TOLERANCE)
    for leaf, data in before:
        assert leaf.tobytes() == data, "the runner changed its input"


# -- the jet tagger, every backend -----------------------------------------------------------------


@pytest.fixture(scope="module")
def jet_runners(request):
    """(runner, reference runner, model) per backend: the jet tagger in the form the backend takes
    (the Keras twin for the Keras-only backend), each prepared once."""
    prepared: dict[str, tuple[yukti.Runner, yukti.Runner, yukti.Model]] = {}
    references: dict[str, yukti.Runner] = {}

    def get(backend: str) -> tuple[yukti.Runner, yukti.Runner, yukti.Model]:
        _require(backend)
        if backend not in prepared:
            for fixture in ("jet_dnn", "jet_dnn_keras"):
                model = request.getfixturevalue(fixture)
                if yukti.runner_class(backend).supports(model):
                    break
            else:
                pytest.fail(f"{backend} supports no form of the jet tagger")
            if model.name not in references:
                references[model.name] = yukti.runner("reference", model)
            prepared[backend] = (yukti.runner(backend, model), references[model.name], model)
        return prepared[backend]

    return get


@pytest.mark.parametrize("backend", [pytest.param(b, marks=pytest.mark.slow) if b in FEW_EXAMPLES else b for b in BACKENDS])
def test_any_input_gives_the_reference_answer_or_an_input_error(backend, jet_runners):
    run, reference, model = jet_runners(backend)
    pool = model.data.X[:64]
    assert pool.dtype == np.float32 and pool.shape[1] == model.inputs[0].shape[1]

    @_settings(backend)
    @given(plan=plans)
    def check(plan: Plan) -> None:
        _check(run, reference, build_case(plan, pool, model.inputs[0].name))

    for plan in covering_plans():
        check = example(plan=plan)(check)
    check()


# -- a model with two inputs: sequences and dicts --------------------------------------------------


@pytest.fixture(scope="module")
def two_input_model() -> yukti.Model:
    """y = a @ W + b, a: (N, 4), b: (N, 3)."""
    weight = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "W"], ["h"], name="mm"), helper.make_node("Add", ["h", "b"], ["y"], name="add")],
        "two_inputs",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 4]), helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [numpy_helper.from_array(weight, "W")],
    )
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


@st.composite
def two_input_cases(draw: Any) -> Case:
    batch = draw(st.integers(1, 6))
    values = st.floats(-4, 4, width=32, allow_subnormal=False)
    a = np.array(draw(st.lists(values, min_size=4 * batch, max_size=4 * batch)), np.float32).reshape(batch, 4)
    b = np.array(draw(st.lists(values, min_size=3 * batch, max_size=3 * batch)), np.float32).reshape(batch, 3)
    meant: list[np.ndarray] | None = [a, b]
    a_value, b_value = a, b
    change = draw(st.sampled_from(["none", "none", "a_float64", "b_lossy", "b_nan", "b_batch", "a_list", "b_fortran"]))
    if change == "a_float64":
        a_value = a.astype(np.float64)
    elif change == "b_lossy":
        b_value, meant = b.astype(np.float64) + 1e-9, None
    elif change == "b_nan":
        b_value = b.copy()
        b_value[draw(st.integers(0, batch - 1)), draw(st.integers(0, 2))] = np.nan
        meant = None
    elif change == "b_batch":
        b_value, meant = np.concatenate([b, b]), None
    elif change == "a_list":
        a_value = a.tolist()  # float32 values as Python floats: round back exactly
    elif change == "b_fortran":
        b_value = np.asfortranarray(b)
    container = draw(st.sampled_from(["list", "tuple", "dict", "dict_reversed", "reversed", "missing", "extra", "one"]))
    value: Any = {"list": [a_value, b_value], "tuple": (a_value, b_value), "dict": {"a": a_value, "b": b_value},
                  "dict_reversed": {"b": b_value, "a": a_value},  # order of a dict does not matter
                  "reversed": [b_value, a_value], "missing": {"a": a_value}, "extra": {"a": a_value, "b": b_value, "c": b_value},
                  "one": a_value}[container]
    if container in ("reversed", "missing", "extra", "one"):
        meant = None
    return Case(value, meant, f"{change}, {container}, batch {batch}")


@pytest.mark.parametrize("backend", TWO_INPUT_BACKENDS)
def test_two_inputs_by_sequence_or_name(backend, two_input_model):
    _require(backend)
    run, reference = yukti.runner(backend, two_input_model), yukti.runner("reference", two_input_model)

    @_settings(backend)
    @given(case=two_input_cases())
    def check(case: Case) -> None:
        _check(run, reference, case)

    check()
