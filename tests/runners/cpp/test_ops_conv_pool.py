"""cpp emitters for Conv, MaxPool/AveragePool, the global pools and BatchNormalization, against
onnxruntime on small hand-built graphs (batch 1, 3 and 70: more than one tile), plus the zoo CNN
against the reference evaluator and the refusals that name the op and node."""

from __future__ import annotations

import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import yukti
from yukti.errors import UnsupportedModelError

pytest.importorskip("onnxruntime")

BATCHES = (1, 3, 70)
ATOL = 1e-4
RNG = np.random.default_rng(1234)


def weights(*shape: int, scale: float = 0.3) -> np.ndarray:
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def build(nodes, in_shape, initializers=None, *, outputs=("y",), opset=18, name="g") -> onnx.ModelProto:  # noqa: ANN001
    """Graph input x of shape (N, *in_shape); output shapes filled in from ONNX shape inference."""
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *in_shape])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT if o != "indices" else TensorProto.INT64, None) for o in outputs],
        initializer=[numpy_helper.from_array(np.asarray(a, np.float32), n) for n, a in (initializers or {}).items()],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    typed = {v.name: v for v in inferred.graph.output}
    for value in proto.graph.output:
        value.CopyFrom(typed[value.name])
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    return proto


def check_against_ort(proto: onnx.ModelProto, in_shape) -> None:  # noqa: ANN001
    model = yukti.load(proto)
    support = yukti.runner_class("cpp").supports(model)
    assert support, support.describe()
    cpp, ort = yukti.runner("cpp", model), yukti.runner("onnxruntime", model)
    for batch in BATCHES:
        x = RNG.standard_normal((batch, *in_shape)).astype(np.float32)
        got, want = cpp(x), ort(x)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=f"batch {batch}")


def conv_model(in_shape, w_shape, *, bias=True, relu=False, **attrs) -> tuple[onnx.ModelProto, tuple]:  # noqa: ANN001
    inits = {"W": weights(*w_shape)}
    inputs = ["x", "W"]
    if bias:
        inits["B"] = weights(w_shape[0])
        inputs.append("B")
    nodes = [helper.make_node("Conv", inputs, ["c" if relu else "y"], name="conv", **attrs)]
    if relu:
        nodes.append(helper.make_node("Relu", ["c"], ["y"], name="relu"))
    return build(nodes, in_shape, inits), in_shape


CONV_CASES = {
    # 1-D: (C, L)
    "conv1d": ((4, 20), (6, 4, 3), dict(pads=[1, 1])),
    "conv1d_stride_dilation_pads": ((3, 31), (5, 3, 5), dict(strides=[2], dilations=[2], pads=[2, 3])),
    "conv1d_valid_nobias": ((2, 17), (3, 2, 4), dict(bias=False)),
    "conv1d_same_upper": ((3, 16), (4, 3, 4), dict(auto_pad="SAME_UPPER", strides=[3])),
    "conv1d_depthwise": ((5, 12), (5, 1, 3), dict(group=5, pads=[1, 1])),
    # 2-D: (C, H, W)
    "conv2d_pad1": ((3, 12, 12), (8, 3, 3, 3), dict(pads=[1, 1, 1, 1])),
    "conv2d_no_pad": ((3, 10, 9), (4, 3, 3, 2), {}),
    "conv2d_stride2_asym_pads": ((3, 11, 10), (5, 3, 3, 3), dict(strides=[2, 2], pads=[1, 0, 2, 1])),
    "conv2d_stride_rect": ((2, 9, 12), (3, 2, 2, 3), dict(strides=[1, 3], pads=[0, 1, 1, 1])),
    "conv2d_dilation_nobias": ((3, 12, 12), (4, 3, 3, 3), dict(dilations=[2, 1], pads=[2, 1, 2, 1], bias=False)),
    "conv2d_groups": ((4, 8, 8), (6, 2, 3, 3), dict(group=2, pads=[1, 1, 1, 1])),
    "conv2d_depthwise": ((6, 9, 9), (12, 1, 3, 3), dict(group=6, pads=[1, 1, 1, 1])),
    "conv2d_depthwise_stride": ((4, 10, 10), (4, 1, 3, 3), dict(group=4, strides=[2, 2], pads=[1, 1, 1, 1])),
    "conv2d_same_upper_stride2": ((3, 9, 10), (4, 3, 3, 3), dict(auto_pad="SAME_UPPER", strides=[2, 2])),
    "conv2d_same_upper": ((2, 7, 8), (3, 2, 4, 4), dict(auto_pad="SAME_UPPER")),
    "conv2d_same_lower": ((2, 7, 8), (3, 2, 4, 4), dict(auto_pad="SAME_LOWER")),
    "conv2d_valid": ((2, 8, 8), (3, 2, 3, 3), dict(auto_pad="VALID")),
    "conv2d_1x1_many_channels": ((29, 5, 5), (16, 29, 1, 1), {}),
    "conv2d_pad_rows_only": ((3, 8, 8), (4, 3, 3, 1), dict(pads=[1, 0, 1, 0])),
    "conv2d_7x7": ((2, 12, 12), (3, 2, 7, 7), dict(pads=[3, 3, 3, 3])),
    # small images, many channels: the channel-vector strategy (remainders in both block axes)
    "conv2d_small_image_many_channels": ((32, 4, 4), (32, 32, 3, 3), dict(pads=[1, 1, 1, 1])),
    "conv2d_odd_channel_count": ((24, 3, 3), (20, 24, 3, 3), dict(pads=[1, 1, 1, 1])),
    "conv2d_small_image_groups": ((32, 4, 4), (32, 16, 3, 3), dict(group=2, pads=[1, 1, 1, 1])),
    "conv2d_small_image_stride": ((16, 7, 7), (24, 16, 3, 3), dict(strides=[2, 2], pads=[1, 1, 1, 1])),
    "conv1d_many_channels": ((32, 6), (40, 32, 3), dict(pads=[1, 1])),
    # large images: row by row, or (too large for the stack copy) the direct strategy
    "conv2d_large_rows": ((4, 100, 100), (3, 4, 3, 3), dict(pads=[1, 1, 1, 1])),
    "conv2d_large_rows_strided": ((4, 90, 90), (2, 4, 3, 3), dict(strides=[2, 2], dilations=[2, 2], pads=[2, 1, 2, 3])),
    "conv2d_large_direct": ((8, 80, 80), (3, 8, 3, 3), dict(pads=[1, 1, 1, 1])),
    "conv2d_large_direct_strided": ((8, 81, 90), (2, 8, 3, 3), dict(strides=[2, 3], dilations=[2, 2], pads=[2, 1, 2, 3])),
    "conv2d_large_direct_groups": ((8, 80, 80), (4, 4, 3, 3), dict(group=2, bias=False)),
}


def conv_case(case: str, relu: bool = False) -> tuple[onnx.ModelProto, tuple]:
    in_shape, w_shape, attrs = CONV_CASES[case]
    attrs = dict(attrs)
    bias = attrs.pop("bias", True)
    return conv_model(in_shape, w_shape, bias=bias, relu=relu, **attrs)


@pytest.mark.parametrize("case", sorted(CONV_CASES))
def test_conv(case):
    check_against_ort(*conv_case(case))


def test_conv_cases_cover_every_strategy():
    from yukti.runners.cpp import codegen, ir

    used = set()
    for case in CONV_CASES:
        source = codegen.generate(ir.from_onnx(conv_case(case)[0])).body
        used.update(re.findall(r"// strategy: (\w+)", source))
    assert used == {"flat", "rows", "channel", "direct"}


@pytest.mark.parametrize("case", ["conv2d_pad1", "conv2d_stride2_asym_pads", "conv2d_small_image_many_channels",
                                  "conv2d_large_direct"])
def test_conv_with_fused_relu(case, monkeypatch):
    """Conv applies an activation folded into it by codegen.fuse_activations (attribute
    fused_activation), in every strategy; enabled here for Conv by widening FUSIBLE_PRODUCERS."""
    from yukti.runners.cpp import codegen, ir

    monkeypatch.setattr(codegen, "FUSIBLE_PRODUCERS", codegen.FUSIBLE_PRODUCERS | {"Conv"})
    proto, in_shape = conv_case(case, relu=True)
    assert "// Relu" not in codegen.generate(ir.from_onnx(proto)).body
    check_against_ort(proto, in_shape)


POOL_CASES = {
    "maxpool_2x2": ("MaxPool", (3, 8, 8), dict(kernel_shape=[2, 2], strides=[2, 2])),
    "maxpool_3x3_s2_pad": ("MaxPool", (4, 9, 9), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "maxpool_ceil": ("MaxPool", (2, 7, 7), dict(kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)),
    "maxpool_ceil_pads": ("MaxPool", (2, 8, 9), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1)),
    "maxpool_dilation": ("MaxPool", (2, 10, 11), dict(kernel_shape=[2, 3], dilations=[2, 2], pads=[1, 2, 0, 1])),
    "maxpool_same_upper": ("MaxPool", (3, 7, 8), dict(kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")),
    "maxpool_1d": ("MaxPool", (3, 20), dict(kernel_shape=[3], dilations=[2], pads=[2, 2])),
    "maxpool_1d_stride": ("MaxPool", (4, 21), dict(kernel_shape=[4], strides=[3], pads=[1, 2], ceil_mode=1)),
    "avgpool_exclude_pad": ("AveragePool", (3, 9, 9), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    "avgpool_include_pad": ("AveragePool", (3, 9, 9), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1], count_include_pad=1)),
    "avgpool_ceil_include_pad": ("AveragePool", (2, 8, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                               ceil_mode=1, count_include_pad=1)),
    "avgpool_ceil_exclude_pad": ("AveragePool", (2, 8, 8), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1],
                                                               ceil_mode=1)),
    "avgpool_asym_pads_stride": ("AveragePool", (2, 10, 9), dict(kernel_shape=[2, 3], strides=[2, 1], pads=[1, 0, 0, 2],
                                                                count_include_pad=1)),
    "avgpool_2x2": ("AveragePool", (4, 8, 8), dict(kernel_shape=[2, 2], strides=[2, 2])),
    "avgpool_same_lower": ("AveragePool", (2, 7, 7), dict(kernel_shape=[2, 2], auto_pad="SAME_LOWER")),
    "avgpool_1d": ("AveragePool", (3, 15), dict(kernel_shape=[4], strides=[2], pads=[1, 2], count_include_pad=1)),
    # planes too large for the padded copy, and windows too wide to fuse: per-tap ranges
    "maxpool_large_plane": ("MaxPool", (2, 130, 131), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    "avgpool_large_plane_ceil": ("AveragePool", (2, 131, 130), dict(kernel_shape=[3, 2], strides=[2, 3], pads=[1, 0, 1, 1],
                                                                    ceil_mode=1, count_include_pad=1)),
    "avgpool_wide_window": ("AveragePool", (2, 12, 12), dict(kernel_shape=[9, 9], pads=[4, 4, 4, 4])),
    "maxpool_wide_window_1d": ("MaxPool", (2, 90), dict(kernel_shape=[70], strides=[5], pads=[3, 3])),
    "global_avg": ("GlobalAveragePool", (5, 6, 7), {}),
    "global_avg_small": ("GlobalAveragePool", (5, 2, 3), {}),
    "global_avg_1d": ("GlobalAveragePool", (4, 37), {}),
    "global_max": ("GlobalMaxPool", (5, 6, 7), {}),
    "global_max_small": ("GlobalMaxPool", (3, 3, 3), {}),
}


def pool_case(case: str) -> tuple[onnx.ModelProto, tuple]:
    op, in_shape, attrs = POOL_CASES[case]
    return build([helper.make_node(op, ["x"], ["y"], name="pool", **attrs)], in_shape), in_shape


@pytest.mark.parametrize("case", sorted(POOL_CASES))
def test_pool(case):
    check_against_ort(*pool_case(case))


def test_pool_cases_cover_both_strategies():
    from yukti.runners.cpp import codegen, ir

    used = set()
    for case in POOL_CASES:
        if POOL_CASES[case][0] in ("MaxPool", "AveragePool"):
            source = codegen.generate(ir.from_onnx(pool_case(case)[0])).body
            used.update(re.findall(r"// strategy: ([\w-]+)", source))
    assert used == {"padded", "per-tap"}


def batchnorm_inits(channels: int) -> dict[str, np.ndarray]:
    return {"gamma": weights(channels, scale=1.0) + 1.0, "beta": weights(channels),
            "mean": weights(channels), "var": np.abs(weights(channels, scale=1.0)) + 0.1}


def test_batchnorm_after_conv():
    inits = {"W": weights(6, 3, 3, 3), "B": weights(6), **batchnorm_inits(6)}
    nodes = [
        helper.make_node("Conv", ["x", "W", "B"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "gamma", "beta", "mean", "var"], ["y"], name="bn", epsilon=1e-3),
    ]
    check_against_ort(build(nodes, (3, 10, 10), inits), (3, 10, 10))


@pytest.mark.parametrize("in_shape", [(7,), (4, 13)])
def test_batchnorm_1d(in_shape):
    inits = batchnorm_inits(in_shape[0])
    node = helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y"], name="bn")
    check_against_ort(build([node], in_shape, inits), in_shape)


def test_small_cnn_chain():
    """Conv-BN-Relu-MaxPool-depthwise Conv-AveragePool-Conv-GlobalAveragePool-Flatten-Gemm."""
    inits = {"W1": weights(8, 2, 3, 3), "B1": weights(8), **batchnorm_inits(8), "W2": weights(8, 1, 3, 3),
             "W3": weights(12, 8, 1, 1), "B3": weights(12), "Wd": weights(12, 5), "Bd": weights(5)}
    nodes = [
        helper.make_node("Conv", ["x", "W1", "B1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c1", "gamma", "beta", "mean", "var"], ["b1"], name="bn1"),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "W2"], ["c2"], name="conv2", group=8, pads=[1, 1, 1, 1]),
        helper.make_node("AveragePool", ["c2"], ["p2"], name="pool2", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p2", "W3", "B3"], ["c3"], name="conv3"),
        helper.make_node("GlobalAveragePool", ["c3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "Wd", "Bd"], ["y"], name="dense"),
    ]
    check_against_ort(build(nodes, (2, 16, 16), inits), (2, 16, 16))


def _refusal(proto: onnx.ModelProto, op: str, node: str, words: str) -> None:
    model = yukti.load(proto)
    support = yukti.runner_class("cpp").supports(model)
    assert not support
    assert op in support.reason and repr(node) in support.reason and words in support.reason, support.reason
    with pytest.raises(UnsupportedModelError, match=op):
        yukti.runner("cpp", model)


def test_refuses_maxpool_indices():
    node = helper.make_node("MaxPool", ["x"], ["y", "indices"], name="pool_with_indices", kernel_shape=[2, 2])
    _refusal(build([node], (2, 6, 6), outputs=("y", "indices")), "MaxPool", "pool_with_indices", "Indices")


def test_refuses_batchnorm_training_mode():
    node = helper.make_node("BatchNormalization", ["x", "gamma", "beta", "mean", "var"], ["y", "", ""], name="bn_train",
                            training_mode=1)
    _refusal(build([node], (3, 5, 5), batchnorm_inits(3)), "BatchNormalization", "bn_train", "training_mode")


def test_refuses_conv3d():
    node = helper.make_node("Conv", ["x", "W"], ["y"], name="conv3d")
    _refusal(build([node], (2, 4, 4, 4), {"W": weights(3, 2, 2, 2, 2)}), "Conv", "conv3d", "3-D")


def test_refuses_ceil_mode_window_in_end_padding():
    """ONNX shape inference keeps a last ceil_mode window that starts in the end padding; runtimes drop it."""
    node = helper.make_node("MaxPool", ["x"], ["y"], name="pool_ceil", kernel_shape=[2], strides=[2], pads=[1, 1], ceil_mode=1)
    _refusal(build([node], (2, 5)), "MaxPool", "pool_ceil", "shape inference")


def test_zoo_cluster_cnn(cluster_cnn):
    x = cluster_cnn.data.X[:300]
    got = yukti.runner("cpp", cluster_cnn)(x)
    want = yukti.runner("reference", cluster_cnn)(x)
    assert np.max(np.abs(got - want)) <= 1e-4
