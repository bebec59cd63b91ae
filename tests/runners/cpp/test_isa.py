"""The cpp backend's vector ISA (runners/cpp/isa.py): read from the compiler per -march, it sets the
generated code's vector width and the dense/conv blocking; the code for every target this machine
can run agrees with onnxruntime, on the zoo and on dense layers of awkward widths."""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.runners.cpp import codegen, ir, isa
from yukti.runners.cpp.ops import gemm

pytestmark = pytest.mark.skipif(not yukti.registry.backend_info("cpp").available, reason="no C++ compiler")

X86 = platform.machine().lower() in ("x86_64", "amd64")
# Agreement with onnxruntime: relative where an output exceeds 1 in magnitude (as the contract tests).
TOLERANCE = 1e-5
BATCHES = (1, 2, 3, 5, 13, 64, 97)  # one row, each leftover block height, a whole tile, several tiles


# -- reading the ISA -------------------------------------------------------------------------------
@pytest.mark.parametrize(("macros", "expected"), [
    ({"__x86_64__", "__SSE2__", "__AVX__", "__AVX2__", "__FMA__", "__AVX512F__"}, ("avx512", 16, 32, True)),
    ({"__x86_64__", "__SSE2__", "__AVX__", "__AVX2__", "__FMA__"}, ("avx2", 8, 16, True)),
    ({"__x86_64__", "__SSE2__", "__AVX__"}, ("avx", 8, 16, False)),
    ({"__x86_64__", "__SSE2__"}, ("sse2", 4, 16, False)),
    ({"__i386__", "__SSE2__"}, ("sse2", 4, 8, False)),
    ({"__aarch64__", "__ARM_NEON"}, ("neon", 4, 32, True)),
    ({"__arm__", "__ARM_NEON"}, ("neon", 4, 16, False)),
    ({"__riscv"}, ("generic", 4, 16, False)),
])
def test_predefined_macros_decide_the_isa(macros, expected):
    found = isa.from_macros(macros)
    assert (found.name, found.lanes, found.vector_registers, found.fma) == expected


@pytest.mark.skipif(not X86, reason="x86-64 -march levels")
@pytest.mark.parametrize(("march", "lanes", "registers", "fma"), [
    ("x86-64-v4", 16, 32, True), ("x86-64-v3", 8, 16, True), ("x86-64-v2", 4, 16, False), ("x86-64", 4, 16, False)])
def test_the_compiler_reports_each_march(march, lanes, registers, fma):
    found = isa.detect(march)
    assert (found.lanes, found.vector_registers, found.fma) == (lanes, registers, fma)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


@pytest.mark.skipif(not X86 or not _cpu_flags(), reason="x86-64 with /proc/cpuinfo")
def test_native_is_this_cpu():
    flags, native = _cpu_flags(), isa.detect("native")
    expected = 16 if "avx512f" in flags else 8 if "avx" in flags else 4
    assert native.lanes == expected
    assert native.fma == ("fma" in flags or "avx512f" in flags)


def test_no_march_is_the_compilers_default_target():
    """march=None adds no -march: the compiler's own default (x86-64: SSE2, 4 lanes)."""
    default = isa.detect(None)
    assert default.lanes <= isa.detect("native").lanes
    if X86:
        done = subprocess.run([isa.find_compiler(), "-dM", "-E", "-x", "c++", "/dev/null"], capture_output=True, text=True)
        assert default == isa.from_macros(line.split()[1] for line in done.stdout.splitlines() if line.startswith("#define"))


def test_target_flags_count_and_the_probe_is_cached(monkeypatch):
    calls = []
    original = subprocess.run

    def counting(command, *args, **kwargs):
        calls.append(command)
        return original(command, *args, **kwargs)

    isa._probe.cache_clear()  # a question asked before would not reach the compiler
    monkeypatch.setattr(isa.subprocess, "run", counting)
    first = isa.detect("native", ["-O2", "-mno-avx512f", "-DX=1"])
    assert isa.detect("native", ("-mno-avx512f",)) is first  # only -m flags are part of the question
    assert len(calls) == 1 and "-mno-avx512f" in calls[0] and "-O2" not in calls[0]
    if X86 and isa.detect("native").lanes == 16:
        assert first.lanes == 8  # AVX-512 switched off: the AVX2 width


def test_a_march_the_compiler_rejects_is_reported_by_the_build(jet_dnn):
    """The probe answers the default ISA; the compile with the same flags fails naming the value."""
    from yukti.runners.cpp.compiler import CompileError

    assert isa.detect("no-such-cpu") == isa.DEFAULT
    with pytest.raises(CompileError, match="no-such-cpu"):
        yukti.runner("cpp", jet_dnn, march="no-such-cpu")


# -- generation per ISA ----------------------------------------------------------------------------
def _dense(sizes: list[int], *, softmax: bool = False, seed: int = 0, rows: int = 0) -> yukti.Model:
    """Gemm + Relu layers of `sizes` (rows > 0: a [N, rows, K] input through MatMul + Add instead)."""
    rng = np.random.default_rng(seed)
    nodes, inits, previous = [], [], "x"
    for i, (k, n) in enumerate(zip(sizes[:-1], sizes[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((k, n)) / np.sqrt(k)).astype(np.float32), f"W{i}"),
                  numpy_helper.from_array((0.1 * rng.standard_normal(n)).astype(np.float32), f"B{i}")]
        last = i == len(sizes) - 2
        out = "y" if last and not softmax else f"h{i}"
        if rows:
            nodes += [helper.make_node("MatMul", [previous, f"W{i}"], [f"m{i}"], name=f"matmul{i}"),
                      helper.make_node("Add", [f"m{i}", f"B{i}"], [out], name=f"add{i}")]
        else:
            nodes.append(helper.make_node("Gemm", [previous, f"W{i}", f"B{i}"], [out], name=f"gemm{i}"))
        previous = out
        if not last:
            nodes.append(helper.make_node("Relu", [previous], [f"r{i}"], name=f"relu{i}"))
            previous = f"r{i}"
    if softmax:
        nodes.append(helper.make_node("Softmax", [previous], ["y"], name="softmax", axis=-1))
    lead = ["N", rows] if rows else ["N"]
    graph = helper.make_graph(nodes, "dense_" + "_".join(map(str, sizes)),
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [*lead, sizes[0]])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [*lead, sizes[-1]])], inits)
    return yukti.load(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]))


def _conv(in_shape: tuple[int, ...], w_shape: tuple[int, ...], seed: int = 0, **attrs: object) -> yukti.Model:
    """Conv + Relu, then a Gemm over the flattened maps (a conv net's usual head)."""
    rng = np.random.default_rng(seed)
    weights = {"W": rng.standard_normal(w_shape) * 0.3, "B": rng.standard_normal(w_shape[0]) * 0.1}
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", **attrs),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten", axis=1)]
    proto = helper.make_model(helper.make_graph(
        nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info("f", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in weights.items()]),
        opset_imports=[helper.make_opsetid("", 18)])
    flat = onnx.shape_inference.infer_shapes(proto, strict_mode=True).graph.output[0]
    features = int(np.prod([d.dim_value for d in flat.type.tensor_type.shape.dim[1:]]))
    proto.graph.initializer.extend([
        numpy_helper.from_array((rng.standard_normal((features, 5)) / np.sqrt(features)).astype(np.float32), "Wd"),
        numpy_helper.from_array(np.zeros(5, np.float32), "Bd")])
    proto.graph.node.append(helper.make_node("Gemm", ["f", "Wd", "Bd"], ["y"], name="head"))
    proto.graph.output[0].CopyFrom(helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]))
    return yukti.load(proto)


ISAS = (isa.AVX512, isa.AVX2, isa.SSE2, isa.NEON)


def test_generated_code_has_the_width_of_its_isa():
    graph = ir.from_onnx(_dense([16, 64, 32, 32, 5]).onnx)
    sources = {target: codegen.generate(graph, isa=target).body for target in ISAS}
    for target, body in sources.items():
        assert f"typedef float vf{target.lanes} __attribute__((vector_size({4 * target.lanes})))" in body
        assert set(re.findall(r"\bvf(\d+)\b", body)) == {str(target.lanes)}  # no other width used
    # the same width, other registers: other blocks (SSE2 16 registers, NEON 32)
    assert sources[isa.SSE2] != sources[isa.NEON]


def test_code_is_remembered_per_isa():
    model = _dense([12, 20, 3], seed=11)
    wide, narrow = codegen.for_model(model, isa=isa.AVX512), codegen.for_model(model, isa=isa.SSE2)
    assert wide is not narrow and "vf16" in wide.body and "vf4" in narrow.body
    assert codegen.for_model(model, isa=isa.AVX512) is wide
    assert codegen.for_model(model) is codegen.for_model(model, isa=isa.detect("native"))  # the default: native


@pytest.mark.parametrize("target", ISAS, ids=lambda t: t.name)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 16, 17, 32, 64, 76, 77, 128, 200, 256])
def test_dense_blocking_covers_every_output_within_the_registers(target, n):
    cut = gemm.panels(64, n, target)
    assert [p.first for p in cut] == list(np.cumsum([0] + [p.vectors for p in cut])[:-1])
    assert sum(p.vectors for p in cut) * target.lanes - n in range(target.lanes)  # padded to whole vectors only
    assert max(p.vectors for p in cut) - min(p.vectors for p in cut) <= 1  # balanced
    for panel in cut:
        # accumulators + the panel's weight vectors + a broadcast fit the register file
        assert panel.rows * panel.vectors + panel.vectors + 1 <= target.vector_registers
        for rows in (panel.rows, 1):
            chains = gemm.chains_for(rows, panel.vectors, 64, target)
            assert rows * panel.vectors * chains <= target.vector_registers - 2


def test_dense_weights_are_packed_panel_by_panel():
    """Each panel's K x width block is contiguous, in the order its k loop reads it."""
    from yukti.runners.cpp.context import EmitContext

    model = _dense([7, 76])  # AVX2: 10 vectors in panels of 3, 3, 2, 2
    graph = codegen.fuse_activations(ir.from_onnx(model.onnx))
    ctx = EmitContext(graph, {"x": "in0", "y": "out0"}, isa=isa.AVX2)
    code = gemm.emit_gemm(graph.nodes[0], ctx)
    packed = next(values for ident, (_, values) in ctx.constants.items() if ident.endswith("_W"))
    weight = numpy_helper.to_array(next(i for i in model.onnx.graph.initializer if i.name == "W0"))
    padded = np.zeros((7, 80), np.float32)
    padded[:, :76] = weight
    cut = gemm.panels(7, 76, isa.AVX2)
    assert [p.vectors for p in cut] == [3, 3, 2, 2]
    expected = np.concatenate([padded[:, p.first * 8:(p.first + p.vectors) * 8].reshape(-1) for p in cut])
    np.testing.assert_array_equal(packed, expected)
    assert "if (total_rows == 1)" in code  # batch 1 crosses the panels in wider blocks


# -- agreement, per target -------------------------------------------------------------------------
def _runnable_marches() -> list[str | None]:
    """native and no -march everywhere; the x86-64 levels this CPU executes (AVX2, SSE only)."""
    marches: list[str | None] = ["native", None]
    if X86:
        native = isa.detect("native")
        for march in ("x86-64-v3", "x86-64-v2"):
            target = isa.detect(march)
            if target.lanes <= native.lanes and (native.fma or not target.fma):
                marches.append(march)
    return marches


MARCHES = _runnable_marches()


def _check(model: yukti.Model, march: str | None, *, tolerance: float = TOLERANCE) -> None:
    cpp = yukti.runner("cpp", model, march=march)
    assert cpp.info.extra["isa"] == isa.detect(march).name
    ort = yukti.runner("onnxruntime", model)
    rng = np.random.default_rng(7)
    for batch in BATCHES:
        x = rng.standard_normal((batch, *model.inputs[0].shape[1:])).astype(np.float32)
        got, want = cpp(x), ort(x)
        scale = np.maximum(np.abs(want), 1)
        np.testing.assert_allclose(got / scale, want / scale, atol=tolerance, rtol=0, err_msg=f"march={march} batch {batch}")


DENSE = {
    "jet_dnn_shape": lambda: _dense([16, 64, 32, 32, 5], softmax=True),
    "fad_autoencoder_shape": lambda: _dense([77, 32, 32, 32, 76], seed=1),
    "dense_10_64_32_32_2": lambda: _dense([10, 64, 32, 32, 2], softmax=True, seed=2),
    # every K and N of {3, 5, 10, 16, 17, 76, 77, 128}, rising then falling
    "odd_rising": lambda: _dense([3, 5, 10, 16, 17, 76, 77, 128, 3], seed=3),
    "odd_falling": lambda: _dense([128, 77, 76, 17, 16, 10, 5, 3], seed=4),
    "wide": lambda: _dense([256, 200, 130], seed=5),
    "rows_per_sample": lambda: _dense([17, 76, 5], seed=6, rows=3),  # MatMul on [N, 3, K]: 3 rows a sample
}
CONV = {
    "conv2d_small_image": lambda: _conv((8, 8, 8), (16, 8, 3, 3), pads=[1, 1, 1, 1]),
    "conv2d_wide_image": lambda: _conv((1, 16, 21), (8, 1, 3, 3), pads=[1, 1, 1, 1]),
    "conv1d_strided": lambda: _conv((8, 216), (12, 8, 5), strides=[2], pads=[2, 2]),
    "conv2d_many_channels": lambda: _conv((24, 4, 4), (20, 24, 3, 3), pads=[1, 1, 1, 1]),
}


@pytest.mark.slow
@pytest.mark.parametrize("march", MARCHES, ids=str)
@pytest.mark.parametrize("name", sorted(DENSE))
def test_dense_nets_agree_on_every_target(name, march):
    _check(DENSE[name](), march)


@pytest.mark.slow
@pytest.mark.parametrize("march", MARCHES, ids=str)
@pytest.mark.parametrize("name", sorted(CONV))
def test_conv_nets_agree_on_every_target(name, march):
    _check(CONV[name](), march)


@pytest.mark.slow
@pytest.mark.parametrize("march", MARCHES, ids=str)
def test_zoo_agrees_on_every_target(march, jet_dnn, cluster_cnn, mdt_conv1d):
    for model in (jet_dnn, cluster_cnn, mdt_conv1d):
        _check(model, march)
