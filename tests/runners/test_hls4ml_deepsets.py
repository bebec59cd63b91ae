"""DeepSets on the hls4ml and fixed backends, and transformers refused by design.

A DeepSets tagger (per-particle MLP, mean over the particles, MLP, softmax) converts from Keras
(Dense on (16, 3), GlobalAveragePooling1D) and, through runners/hls4ml/onnx_rewrite.py, from ONNX:
torch's export (rank-3 MatMul, ReduceMean) and tf2onnx's (Tensordot Reshape pattern, ReduceMean)
become the Keras path's pointwise Conv1D and GlobalPooling1D. A torch module goes through its ONNX
form automatically, since hls4ml's torch converter has no torch.mean. Attention (a product of two
activations) converts in hls4ml 1.3 only from HGQ2's QMultiHeadAttention: refused by design.

The networks' weights are set here (`_weights`) so that their answers vary between jets and are
decisive: argmax agreement then measures something. Each hls4ml build takes 10-30 s (marked slow); fixed ~1 s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import yukti
from yukti import metrics

pytestmark = pytest.mark.filterwarnings("ignore")

PARTICLES, FEATURES, CLASSES = 16, 3, 5
SAMPLES = 2000
SAT = "ap_fixed<10,4,AP_RND,AP_SAT>"
# The contract's bounds for fixed-point emulation of softmax outputs (tests/runners/test_contract.py).
FIXED_POINT_MAX_ABS = 0.15


def _require(*names: str) -> None:
    for name in names:
        info = yukti.registry.backend_info(name)
        if not info.available:
            pytest.skip(f"{name} backend unavailable: {info.reason}")


def constituents(n: int, seed: int) -> np.ndarray:
    """(n, 16, 3) features in [-1, 1]; each jet has 1 to 16 particles, the rest zero-padded."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, PARTICLES, FEATURES)).astype(np.float32)
    x[np.arange(PARTICLES)[None, :] >= rng.integers(1, PARTICLES + 1, n)[:, None]] = 0
    return x


def _weights(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel (inputs, outputs), bias) of phi 3-32-32 and rho 32-32-5, by hand: phi carries each
    feature's positive and negative part, relu(x) and relu(-x), through both layers, so the mean
    holds each jet's average of them; rho weighs those six means strongly into five logits, whose
    biases centre them on sample jets. Random weights alone average every jet into the same answer;
    these give varied, decisive answers (argmax agreement measures something) with sums and logits
    within ap_fixed<16,6>, and small random weights elsewhere so every weight and bias counts."""
    rng = np.random.default_rng(seed)
    sign = np.concatenate([np.eye(FEATURES), -np.eye(FEATURES)], axis=1)  # (3, 6): x -> (x, -x)
    carry = np.eye(32)[:, :6] @ np.eye(6, 32)  # the six parts pass through unchanged
    layers = []
    for shape, main in [((FEATURES, 32), np.pad(sign, ((0, 0), (0, 26)))), ((32, 32), carry), ((32, 32), carry)]:
        noise = rng.normal(0, 0.1, shape) * (main == 0) * (np.arange(shape[1]) >= 6)  # leave the six parts clean
        bias = np.where(np.arange(shape[1]) >= 6, rng.normal(0, 0.1, shape[1]), 0)
        layers.append(((main + noise).astype(np.float32), bias.astype(np.float32)))
    out = np.zeros((32, CLASSES))
    out[:6] = rng.normal(0, 8, (6, CLASSES))
    out[6:] = rng.normal(0, 0.1, (26, CLASSES))
    x = constituents(SAMPLES, seed=100)
    hidden = np.maximum(np.concatenate([x, -x], axis=2), 0).mean(axis=1)  # the six means (the rest is small)
    layers.append((out.astype(np.float32), (-(hidden @ out[:6]).mean(axis=0)).astype(np.float32)))
    return layers


def _torch_deepsets() -> yukti.Model:
    torch = pytest.importorskip("torch")
    from yukti import zoo

    module = zoo._DeepSets.torch().eval()
    linears = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for linear, (kernel, bias) in zip(linears, _weights(), strict=True):
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(bias))
    return yukti.load(module, torch.zeros(1, PARTICLES, FEATURES), name="deepsets_torch")


def _keras_deepsets() -> yukti.Model:
    pytest.importorskip("keras")
    from yukti import zoo

    net = zoo._DeepSets.keras()
    dense = [layer for layer in net.layers if layer.get_weights()]
    for layer, (kernel, bias) in zip(dense, _weights(seed=1), strict=True):
        layer.set_weights([kernel, bias])
    return yukti.load(net, name="deepsets_keras")


def _onnx_only(model: yukti.Model, name: str) -> yukti.Model:
    """The network as a user's bare ONNX file (torch's export, or tf2onnx's for a Keras model)."""
    return yukti.load(model.onnx_bytes, name=name)


@pytest.fixture(scope="module")
def models(isolated_yukti_dirs: None) -> dict[str, yukti.Model]:
    torch_model, keras_model = _torch_deepsets(), _keras_deepsets()
    return {"torch": torch_model, "onnx": _onnx_only(torch_model, "deepsets_onnx"), "keras": keras_model,
            "keras_onnx": _onnx_only(keras_model, "deepsets_keras_onnx")}


def _onnxruntime(model: yukti.Model, x: np.ndarray) -> np.ndarray:
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(model.onnx_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def _options() -> dict[str, Any]:
    from yukti.runners.hls4ml.runner import HLS4MLRunner

    return {k: v for k, v in HLS4MLRunner.resolve_options({}).items() if k not in ("threads", "check_finite")}


# -- conversion (no compile) -------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["onnx", "keras_onnx"])
def test_onnx_deepsets_becomes_the_keras_layers(models, form, tmp_path: Path):
    """Both ONNX exports convert to the layers hls4ml makes of the Keras DeepSets: a pointwise Conv1D
    per particle layer (16 positions x 32 filters, not a 512-filter Dense), the mean as an average
    GlobalPooling1D over the 16 particles; and the graph rewritten for qonnx computes what the file
    computes."""
    _require("hls4ml")
    from yukti.runners.hls4ml.build import convert
    from yukti.runners.hls4ml.frontend import frontend_for
    from yukti.runners.hls4ml.onnx_rewrite import for_qonnx
    from yukti.safe_names import sanitized_onnx

    model = models[form]
    assert yukti.runner_class("hls4ml").supports(model)
    layers = {layer.class_name: layer for layer in convert(model, frontend_for("onnx"), _options(), tmp_path / "o").get_layers()}
    keras_classes = {layer.class_name for layer in convert(models["keras"], frontend_for("keras"), _options(),
                                                           tmp_path / "k").get_layers()}
    assert {"PointwiseConv1D", "GlobalPooling1D"} <= set(layers) and {"PointwiseConv1D", "GlobalPooling1D"} <= keras_classes
    conv, pool = layers["PointwiseConv1D"], layers["GlobalPooling1D"]
    assert list(conv.get_output_variable().shape) == [PARTICLES, 32] and conv.get_attr("n_filt") == 32
    assert (pool.get_attr("n_in"), pool.get_attr("n_filt"), pool.get_attr("pool_op")) == (PARTICLES, 32, "Average")
    assert not {"MatMul", "Transpose", "Reshape"} & set(layers)

    ort = pytest.importorskip("onnxruntime")
    x = constituents(7, seed=3)  # a batch size other than qonnx's 1: the rewrite keeps the batch free
    original = sanitized_onnx(model.onnx)
    rewritten = for_qonnx(original)
    assert rewritten is not original and {n.op_type for n in rewritten.graph.node} >= {"Conv", "ReduceMean"}
    sessions = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (original, rewritten)]
    outputs = [session.run(None, {session.get_inputs()[0].name: x})[0] for session in sessions]
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)


def test_a_mean_that_is_not_over_the_particles_stays_refused():
    """Only the mean over axis 1 of a (batch, positions, channels) tensor is a global average
    pooling; a mean over the features (axis 2) is not, and is refused naming ReduceMean."""
    _require("hls4ml")
    torch = pytest.importorskip("torch")

    class FeatureMean(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.phi, self.out = torch.nn.Linear(3, 8), torch.nn.Linear(16, 5)

        def forward(self, x):
            return torch.softmax(self.out(torch.relu(self.phi(x)).mean(dim=2)), dim=1)

    torch.manual_seed(0)
    model = _onnx_only(yukti.load(FeatureMean().eval(), torch.zeros(1, PARTICLES, FEATURES)), "feature_mean")
    support = yukti.runner_class("hls4ml").supports(model)
    assert not support and not support.by_design
    assert [kind for kind, _ in support.unsupported] == ["ReduceMean"], support.describe()


def test_torch_deepsets_goes_through_its_onnx_form(models):
    """hls4ml's torch converter has no torch.mean; with the default source the module's ONNX form is
    converted instead, and info() says why. A module neither converter takes stays refused, naming both."""
    _require("hls4ml", "fixed")
    torch = pytest.importorskip("torch")
    from yukti.runners.hls4ml.frontend import choose_source, frontend_for, pick_source

    model = models["torch"]
    assert ("torch.mean", "mean") in frontend_for("torch").unsupported_layers(model)
    source, why = pick_source(model, "auto")
    assert source == "onnx" and "torch.mean" in why
    assert choose_source(model, "torch") == "torch"  # asked for by name: no fallback
    for backend in ("hls4ml", "fixed"):
        assert yukti.runner_class(backend).supports(model), backend

    class MaxPooled(torch.nn.Module):  # torch.amax -> ReduceMax: neither converter has it
        def __init__(self) -> None:
            super().__init__()
            self.phi, self.rho = torch.nn.Linear(3, 8), torch.nn.Linear(8, 5)

        def forward(self, x):
            return torch.softmax(self.rho(torch.relu(self.phi(x)).amax(dim=1)), dim=1)

    refused = yukti.load(MaxPooled().eval(), torch.zeros(1, PARTICLES, FEATURES), name="deepsets_max")
    assert pick_source(refused, "auto")[0] == "torch"
    for backend in ("hls4ml", "fixed"):
        support = yukti.runner_class(backend).supports(refused)
        assert not support and not support.by_design, (backend, support.describe())
        assert "torch.amax" in support.describe() and "ReduceMax" in support.reason, support.describe()


# -- transformers: refused by design -----------------------------------------------------------------


def _keras_attention() -> Any:
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((PARTICLES, FEATURES), name="constituents")
    x = keras.layers.Dense(16, name="embed")(inputs)
    x = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8, name="attention")(x, x)
    x = keras.layers.GlobalAveragePooling1D(name="mean")(x)
    return keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax", name="output")(x), name="keras_mha")


def test_transformers_are_refused_by_design_naming_the_attention():
    """The torch transformer (q @ k^T written out), its ONNX form and a Keras MultiHeadAttention:
    refused by design on hls4ml and fixed, naming the products of two activations or the layer;
    a model refused for a layer that is not attention (GELU) is not refused by design."""
    _require("hls4ml", "fixed")
    torch = pytest.importorskip("torch")
    from yukti import zoo

    torch.manual_seed(0)
    transformer = yukti.load(zoo._jet_transformer().eval(), torch.zeros(1, PARTICLES, FEATURES), name="transformer")
    cases = {
        "torch": (transformer, [("MatMul", "/attention/MatMul"), ("MatMul", "/attention/MatMul_1")]),
        "onnx": (_onnx_only(transformer, "transformer_onnx"), [("MatMul", "/attention/MatMul"), ("MatMul", "/attention/MatMul_1")]),
        "keras": (yukti.load(_keras_attention()), [("MultiHeadAttention", "attention")]),
    }
    for form, (model, expected) in cases.items():
        for backend in ("hls4ml", "fixed"):
            support = yukti.runner_class(backend).supports(model)
            assert not support and support.by_design, (form, backend, support.describe())
            assert list(support.unsupported) == expected, (form, backend, support.unsupported)
            assert "QMultiHeadAttention" in support.reason and "not from torch, ONNX or plain Keras" in support.reason

    class Gelu(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = torch.nn.Linear(4, 3), torch.nn.GELU()

        def forward(self, x):
            return self.act(self.fc(x))

    support = yukti.runner_class("hls4ml").supports(yukti.load(Gelu().eval(), torch.zeros(1, 4), name="gelu"))
    assert not support and not support.by_design and ("GELU", "act") in support.unsupported


def test_products_of_two_activations_are_attention_and_a_product_with_a_weight_is_not():
    """Traced (torch.fx) and exported (ONNX): x @ x^T multiplies two activations and
    nn.MultiheadAttention is attention; x @ W with W a parameter is a linear layer, not flagged."""
    torch = pytest.importorskip("torch")
    from yukti.runners.hls4ml.frontend import frontend_for

    class SelfSimilarity(torch.nn.Module):
        def forward(self, x):
            return torch.softmax((x @ x.transpose(1, 2)).mean(dim=2), dim=1)

    class Projection(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(3, 5))

        def forward(self, x):
            return torch.softmax((x @ self.weight).mean(dim=1), dim=1)

    class Attention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = torch.nn.MultiheadAttention(3, 1, batch_first=True)

        def forward(self, x):
            return torch.softmax(self.attention(x, x, x, need_weights=False)[0].mean(dim=1), dim=1)

    torch.manual_seed(0)
    example = torch.zeros(1, PARTICLES, FEATURES)
    similarity = yukti.load(SelfSimilarity().eval(), example, name="similarity")
    assert [kind for kind, _ in frontend_for("torch").attention(similarity)] == ["torch.matmul"]
    assert [kind for kind, _ in frontend_for("onnx").attention(similarity)] == ["MatMul"]
    attention = yukti.load(Attention().eval(), example, name="mha")
    assert ("MultiheadAttention", "attention") in frontend_for("torch").attention(attention)
    projection = yukti.load(Projection().eval(), example, name="projection")
    assert frontend_for("torch").attention(projection) == () and frontend_for("onnx").attention(projection) == ()


# -- hls4ml against onnxruntime, and fixed bit for bit against hls4ml ---------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("form", ["torch", "keras"])
def test_hls4ml_agrees_with_onnxruntime(models, form):
    """The emulation (its own self-check included) keeps the answers of the float network on padded
    jets, within the contract's bounds for fixed point; the torch module runs from its ONNX form."""
    _require("hls4ml")
    model = models[form]
    runner = yukti.runner("hls4ml", model)
    assert runner.info["source"] == ("onnx" if form == "torch" else "keras")
    if form == "torch":
        assert "torch.mean" in runner.info["source_why"]
    x = constituents(SAMPLES, seed=7)
    out, ref = runner(x), _onnxruntime(model, x)
    measured, problems = metrics.task_check(out, ref, "classification")
    print(f"\nhls4ml {form} DeepSets vs onnxruntime, {SAMPLES} padded jets at ap_fixed<16,6>: argmax agreement "
          f"{measured['argmax_agreement']:.4f}, max abs {np.abs(out - ref).max():.4f}")
    assert not problems, problems
    assert len(np.unique(ref.argmax(axis=1))) > 2  # varied answers, or the agreement measures nothing
    assert np.abs(out - ref).max() <= FIXED_POINT_MAX_ABS


def _hls4ml_unchecked(model: yukti.Model, options: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    """The hls4ml backend without its float self-check: the reference here is hls4ml itself, and
    the narrow type is chosen to depart from float."""
    import yukti.runners.hls4ml.runner as hls4ml_runner

    monkeypatch.setattr(hls4ml_runner, "self_check", lambda *args, **kwargs: {"skipped": "bit-identity test"})
    return yukti.runner("hls4ml", model, **options)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["ap_fixed<16,6>", SAT])
@pytest.mark.parametrize("form", ["onnx", "keras"])
def test_fixed_equals_hls4ml(models, monkeypatch, form, precision):
    """`fixed` runs what hls4ml runs, `==` on every output element, on padded jets (the narrow
    saturating type really saturates: asserted through the overflow counters)."""
    _require("fixed", "hls4ml")
    model = models[form]
    x = constituents(SAMPLES, seed=11)
    fixed = yukti.runner("fixed", model, precision=precision)
    expected = _hls4ml_unchecked(model, {"precision": precision}, monkeypatch)(x)
    assert fixed.info["source"] == ("onnx" if form == "onnx" else "keras")
    assert len(np.unique(expected.argmax(axis=1))) > 1  # the outputs vary: the comparison compares something
    got, report = fixed.run_with_overflows(x)
    np.testing.assert_array_equal(fixed(x), expected)
    np.testing.assert_array_equal(got, expected)
    if precision == SAT:
        assert report["overflows"].sum() > 0, report
