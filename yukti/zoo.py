"""Small reference networks of the kinds trigger people run, trained here, deterministically.

`get(name)` returns a `yukti.Model` with its original framework object (torch module or Keras
model) and its evaluation data (the held-out split, preprocessed the way the model expects).
Training runs once; the ONNX form, the framework's own saved model and the preprocessing go to the
artifact cache keyed by the recipe, seed and framework versions.

Each framework has one trainer (`_TorchTrainer`, `_KerasTrainer`) that knows how to train, save
and reload its models; the split, the standardization and the cache handling are shared, so a
twin trained in another framework sees exactly the same data.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np

from yukti import datasets
from yukti.cache import ArtifactCache
from yukti.errors import UnknownNameError
from yukti.model import Model, from_onnx


@dataclass(frozen=True)
class ZooSpec:
    name: str
    description: str
    dataset: Callable[[], datasets.Dataset]
    build: Callable[[], Any]  # returns an untrained network of `framework`
    epochs: int
    batch_size: int
    learning_rate: float
    standardize: bool
    recipe_version: int = 1  # bump when the recipe changes: it is part of the cache key
    framework: str = "torch"  # "torch" or "keras": picks the trainer
    # An autoencoder: trained to reconstruct these input features [start, stop) (mean squared error)
    # on the background class only, scored by its reconstruction error. None: a classifier (NLL).
    reconstructs: tuple[int, int] | None = None
    # The fixed-point settings this model's firmware is built with (hls4ml/fixed options), where
    # hls4ml's default ap_fixed<16,6> (truncate, wrap) does not compute the same function: a
    # DeepSets' mean sums 16 particles and wraps. In model.meta["fixed_point"]; None: the default.
    fixed_point: dict[str, Any] | None = None


# -- architectures ---------------------------------------------------------------------------------


def _jet_dnn() -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 5), nn.Softmax(dim=1),
    )


def _jet_dnn_keras() -> Any:
    import keras

    # Not "input": hls4ml reserves that layer name. The ONNX form renames it to "input" (see
    # _canonical_tf2onnx) so the twins take the same dict inputs.
    inputs = keras.Input((16,), name="jet_features")
    x = keras.layers.Dense(64, activation="relu", name="dense_1")(inputs)
    x = keras.layers.Dense(32, activation="relu", name="dense_2")(x)
    x = keras.layers.Dense(32, activation="relu", name="dense_3")(x)
    outputs = keras.layers.Dense(5, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="jet_dnn_keras")


def _cluster_cnn() -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 3), nn.Softmax(dim=1),
    )


def _mdt_conv1d() -> Any:
    import keras

    # Keras (channels-last): hls4ml converts a torch Conv1D followed by Flatten in another order
    # than torch computes it, so the fixed-point backends need the Keras form of this net.
    inputs = keras.Input((216, 8), name="mdt_hits")
    x = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv_1")(inputs)
    x = keras.layers.MaxPooling1D(4, name="pool_1")(x)
    x = keras.layers.Conv1D(4, 3, padding="same", activation="relu", name="conv_2")(x)
    x = keras.layers.MaxPooling1D(2, name="pool_2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(5, activation="relu", name="dense_1")(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="output")(x)
    return keras.Model(inputs, outputs, name="mdt_conv1d")


class _DeepSets:
    """Per-particle MLP (phi), mean over the particles, MLP (rho), softmax: the DeepSets jet tagger
    of the hls4ml constituent-level tutorials, on (constituents, features) inputs."""

    @staticmethod
    def torch() -> Any:
        import torch.nn as nn

        class DeepSets(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.phi = nn.Sequential(nn.Linear(3, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU())
                self.rho = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5), nn.Softmax(dim=1))

            def forward(self, x: Any) -> Any:
                return self.rho(self.phi(x).mean(dim=1))

        return DeepSets()

    @staticmethod
    def keras() -> Any:
        import keras

        # Dense on (constituents, features) acts per particle; GlobalAveragePooling1D is the mean
        # over the particles: both layers hls4ml converts from Keras.
        inputs = keras.Input((16, 3), name="constituents")
        x = keras.layers.Dense(32, activation="relu", name="phi_1")(inputs)
        x = keras.layers.Dense(32, activation="relu", name="phi_2")(x)
        x = keras.layers.GlobalAveragePooling1D(name="mean")(x)
        x = keras.layers.Dense(32, activation="relu", name="rho_1")(x)
        outputs = keras.layers.Dense(5, activation="softmax", name="output")(x)
        return keras.Model(inputs, outputs, name="jet_deepsets_keras")


def _jet_transformer() -> Any:
    """One encoder block on the constituents: embedding, 2-head self-attention with the padded
    particles masked, residual + LayerNorm, GELU feed-forward, residual + LayerNorm, mean pooling,
    softmax; written out (not nn.MultiheadAttention) as particle-transformer code usually is, so the
    ONNX form has torch's reshape arithmetic around the attention, Where/Equal for the mask and Erf."""
    import torch
    import torch.nn as nn

    class SelfAttention(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads, self.scale = heads, (dim // heads) ** -0.5
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def forward(self, x: Any, padded: Any) -> Any:
            b, n, d = x.shape
            q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2) for t in self.qkv(x).chunk(3, dim=-1))
            scores = (q @ k.transpose(-2, -1)) * self.scale
            scores = scores.masked_fill(padded[:, None, None, :], -1e4)
            y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, d)
            return self.out(y)

    class Transformer(nn.Module):
        def __init__(self, features: int = 3, dim: int = 16, heads: int = 2, classes: int = 5) -> None:
            super().__init__()
            self.embed = nn.Linear(features, dim)
            self.attention = SelfAttention(dim, heads)
            self.norm_1, self.norm_2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.feed_forward = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
            self.head = nn.Linear(dim, classes)

        def forward(self, x: Any) -> Any:
            padded = x[:, :, 0] == 0  # zero-padded particles (pT fraction 0) attend to nothing
            h = self.embed(x)
            h = self.norm_1(h + self.attention(h, padded))
            h = self.norm_2(h + self.feed_forward(h))
            return torch.softmax(self.head(h.mean(dim=1)), dim=1)

    return Transformer()


def _jet_fusion() -> Any:
    """A two-input tagger: the jet's summary features (6) through a dense branch, its constituents
    (16 x 3) through a DeepSets branch (per-particle MLP, mean), concatenated, MLP, softmax."""
    import torch
    import torch.nn as nn

    class JetFusion(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.jet = nn.Sequential(nn.Linear(6, 16), nn.ReLU())
            self.phi = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU())
            self.head = nn.Sequential(nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 5), nn.Softmax(dim=1))

        def forward(self, jet: Any, constituents: Any) -> Any:
            return self.head(torch.cat([self.jet(jet), self.phi(constituents).mean(dim=1)], dim=1))

    return JetFusion()


def _two_input_jets() -> datasets.Dataset:
    return datasets.constituents_synthetic(jet_features=True)


def _fad_autoencoder() -> Any:
    import torch.nn as nn

    # 77 inputs (19 objects x 4 features + the pile-up count), 76 outputs: the objects are
    # reconstructed, the pile-up count only conditions the encoding (yukti.zoo: reconstructs).
    return nn.Sequential(nn.Linear(77, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 76))


SPECS: dict[str, ZooSpec] = {
    "jet_dnn": ZooSpec(
        "jet_dnn", "jet tagger 16-64-32-32-5 (ReLU, softmax) of the hls4ml tutorial, on jets_synthetic",
        datasets.jets_synthetic, _jet_dnn, epochs=12, batch_size=256, learning_rate=3e-3, standardize=True,
    ),
    "jet_dnn_keras": ZooSpec(
        "jet_dnn_keras", "jet_dnn's Keras-trained twin (same 16-64-32-32-5 net, data and standardization), on jets_synthetic",
        datasets.jets_synthetic, _jet_dnn_keras, epochs=12, batch_size=256, learning_rate=3e-3, standardize=True,
        framework="keras",
    ),
    "cluster_cnn": ZooSpec(
        "cluster_cnn", "Conv2D net on 16x16 pixel-cluster charge maps (single/inclined/merged), on pixel_clusters_synthetic",
        datasets.pixel_clusters_synthetic, _cluster_cnn, epochs=6, batch_size=128, learning_rate=3e-3, standardize=False,
    ),
    "mdt_conv1d": ZooSpec(
        "mdt_conv1d", "Conv1D muon trigger on 8 x 216 drift-tube hits (709 parameters; the L0 MDT trigger's shape), "
                      "Keras, on mdt_hits_synthetic",
        datasets.mdt_hits_synthetic, _mdt_conv1d, epochs=6, batch_size=128, learning_rate=3e-3, standardize=False,
        framework="keras",
    ),
    "jet_deepsets": ZooSpec(
        "jet_deepsets", "DeepSets jet tagger on 16 constituents x (pT fraction, eta, phi relative to the jet): "
                        "per-particle MLP, mean, MLP, softmax; on constituents_synthetic",
        datasets.constituents_synthetic, _DeepSets.torch, epochs=20, batch_size=256, learning_rate=3e-3, standardize=False,
        # its mean (hls4ml's GlobalPooling1D, converted from the ONNX ReduceMean) sums 16 particles up
        # to ~75 before dividing: the accumulator gets 10 integer bits
        fixed_point={"precision": "ap_fixed<16,6,AP_RND,AP_SAT>",
                     "layer_precision": {"ReduceMean_0": {"accum": "ap_fixed<20,10,AP_RND,AP_SAT>"}}},
    ),
    "jet_deepsets_keras": ZooSpec(
        "jet_deepsets_keras", "jet_deepsets' Keras-trained twin (Dense per particle, GlobalAveragePooling1D: what hls4ml "
                              "converts from Keras), on constituents_synthetic",
        datasets.constituents_synthetic, _DeepSets.keras, epochs=20, batch_size=256, learning_rate=3e-3, standardize=False,
        fixed_point={"precision": "ap_fixed<16,6,AP_RND,AP_SAT>"},
        framework="keras",
    ),
    "jet_transformer": ZooSpec(
        "jet_transformer", "particle transformer, one encoder block (embedding 16, 2-head self-attention with padded "
                           "particles masked, LayerNorm, GELU feed-forward), mean pooling, softmax; on constituents_synthetic",
        datasets.constituents_synthetic, _jet_transformer, epochs=8, batch_size=256, learning_rate=3e-3, standardize=False,
    ),
    "jet_fusion": ZooSpec(
        "jet_fusion", "two-input jet tagger: jet summary features (6, dense branch) + 16 constituents x 3 (DeepSets "
                      "branch), concatenated, softmax; on constituents_synthetic_two_input",
        _two_input_jets, _jet_fusion, epochs=15, batch_size=256, learning_rate=3e-3, standardize=False,
        fixed_point={"precision": "ap_fixed<16,6,AP_RND,AP_SAT>"},
    ),
    "fad_autoencoder": ZooSpec(
        "fad_autoencoder", "dense autoencoder 77-32-32-32-76 for L1 anomaly detection, trained on standard-model events "
                           "only; anomaly score = reconstruction error of the 76 object features; on l1_events_synthetic",
        datasets.l1_events_synthetic, _fad_autoencoder, epochs=30, batch_size=256, learning_rate=2e-3, standardize=True,
        reconstructs=(0, 76),
    ),
}


# -- per-framework trainers ------------------------------------------------------------------------


class _TorchTrainer:
    framework: ClassVar[str] = "torch"

    @staticmethod
    def versions() -> dict[str, str]:
        import torch

        return {"torch": torch.__version__.split("+")[0]}

    @staticmethod
    def train(spec: ZooSpec, train: datasets.Dataset, seed: int, out: Path) -> dict[str, Any]:
        """Train on the preprocessed split, write model.onnx and weights.pt; return the record."""
        import torch

        threads = torch.get_num_threads()
        deterministic = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(1)  # one thread: identical floating-point reductions on every machine
        torch.use_deterministic_algorithms(True)
        try:
            generator = torch.Generator().manual_seed(seed)
            torch.manual_seed(seed)
            module = spec.build()
            optimiser = torch.optim.Adam(module.parameters(), lr=spec.learning_rate)
            # every model input (a two-input model trains on both); X is the first
            arrays = [torch.from_numpy(a) for a in (train.inputs or (train.X,))]
            X, y = arrays[0], torch.from_numpy(train.y)
            if spec.reconstructs is None:
                # Softmax is part of the deployed model; train on log-probabilities of its output.
                nll = torch.nn.NLLLoss()

                def loss_fn(inputs: list[Any], labels: Any) -> Any:
                    return nll(torch.log(module(*inputs).clamp_min(1e-12)), labels)
            else:
                first, last = spec.reconstructs
                mse = torch.nn.MSELoss()

                def loss_fn(inputs: list[Any], labels: Any) -> Any:
                    return mse(module(*inputs), inputs[0].flatten(1)[:, first:last])
            history = []
            for _ in range(spec.epochs):
                order = torch.randperm(len(X), generator=generator)
                total = 0.0
                for start in range(0, len(X), spec.batch_size):
                    index = order[start:start + spec.batch_size]
                    optimiser.zero_grad()
                    loss = loss_fn([a[index] for a in arrays], y[index])
                    loss.backward()
                    optimiser.step()
                    total += loss.detach().item() * len(index)
                history.append(total / len(X))
            module.eval()
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)

        from yukti.model import from_torch

        examples = tuple(a[:1] for a in arrays)
        model = from_torch(module, examples if len(examples) > 1 else examples[0], name=spec.name,
                           input_names=train.meta.get("input_names"))
        (out / "model.onnx").write_bytes(model.onnx_bytes)
        torch.save(module.state_dict(), out / "weights.pt")
        return {"loss_per_epoch": history}

    @staticmethod
    def load(spec: ZooSpec, path: Path) -> Model:
        import torch

        module = spec.build()
        module.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
        module.eval()
        model = from_onnx((path / "model.onnx").read_bytes(), name=spec.name, origin=f"yukti.zoo ({spec.description})")
        model.source = "torch"
        model.torch_module = module
        return model


class _KerasTrainer:
    framework: ClassVar[str] = "keras"

    @staticmethod
    def versions() -> dict[str, str]:
        import keras
        import tensorflow as tf

        return {"keras": keras.__version__, "tensorflow": tf.__version__}

    @staticmethod
    def train(spec: ZooSpec, train: datasets.Dataset, seed: int, out: Path) -> dict[str, Any]:
        """Train with `fit` under op determinism, write model.keras and its ONNX form (tf2onnx)."""
        import keras
        import tensorflow as tf

        threads = _tf_single_thread(tf)
        determinism = _TfDeterminism(tf)
        # set_random_seed seeds Python, NumPy and TensorFlow globally; give the caller's Python
        # and NumPy generators back afterwards (TensorFlow's global seed has no getter).
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            determinism.enable()
            keras.utils.set_random_seed(seed)
            network = spec.build()
            network.compile(optimizer=keras.optimizers.Adam(learning_rate=spec.learning_rate),
                            loss="sparse_categorical_crossentropy")  # on the softmax output, like torch's NLL of its log
            history = network.fit(train.X, train.y.astype(np.int64), epochs=spec.epochs, batch_size=spec.batch_size,
                                  shuffle=True, verbose=0)
        finally:
            determinism.restore()
            random.setstate(python_state)
            np.random.set_state(numpy_state)

        from yukti.model import from_keras

        model = from_keras(network, name=spec.name)
        network.save(out / "model.keras")
        # model.onnx_bytes raises, with tf2onnx's reason, if the conversion failed
        (out / "model.onnx").write_bytes(_canonical_tf2onnx(model.onnx_bytes))
        return {"loss_per_epoch": [float(v) for v in history.history["loss"]], "tf_threads": threads}

    @staticmethod
    def load(spec: ZooSpec, path: Path) -> Model:
        import keras

        network = keras.saving.load_model(path / "model.keras")
        # The stored ONNX is the one converted at training time: re-converting on every load costs
        # ~0.6 s and would tie the model hash to tf2onnx's output staying byte-identical.
        model = from_onnx((path / "model.onnx").read_bytes(), name=spec.name, origin=f"yukti.zoo ({spec.description})")
        model.source = "keras"
        model.keras_model = network
        return model


def _tf_single_thread(tf: Any) -> dict[str, Any]:
    """Ask TensorFlow for one intra- and one inter-op thread (identical reductions everywhere).

    TensorFlow fixes its thread pools when it initialises, process-wide; if that already happened
    the request is refused and training runs on the pools it has, still under op determinism
    (same results in this process; another thread count may round differently). Returns what applies.
    """
    from yukti.toolchain import pin_tensorflow_threads, tensorflow_threads

    pin_tensorflow_threads(1, 1)
    return tensorflow_threads()


class _TfDeterminism:
    """enable_op_determinism() for the training only: it is process-wide and makes some GPU ops
    raise, so the previous state is put back where TensorFlow offers a way (a private module)."""

    def __init__(self, tf: Any) -> None:
        try:
            from tensorflow.python.framework import config
        except ImportError:  # pragma: no cover - layout of another TensorFlow version
            config = None
        self._config = config
        self._enable = tf.config.experimental.enable_op_determinism
        self._was = bool(config.is_op_determinism_enabled()) if config and hasattr(config, "is_op_determinism_enabled") else None

    def enable(self) -> None:
        self._enable()

    def restore(self) -> None:
        if self._was is False and hasattr(self._config, "disable_op_determinism"):
            self._config.disable_op_determinism()


def _canonical_tf2onnx(data: bytes) -> bytes:
    """tf2onnx's output made reproducible (yukti.model.stable_tf2onnx), with its single input and
    output named like torch's export: Keras names them "jet_features", "Identity:0"; "input" and
    "output" match jet_dnn, so the twins take the same dict inputs."""
    import onnx

    from yukti.model import stable_tf2onnx

    proto = stable_tf2onnx(onnx.load_from_string(data))
    graph = proto.graph
    names = {}
    if len(graph.input) == 1:
        names[graph.input[0].name] = "input"
    if len(graph.output) == 1:
        names[graph.output[0].name] = "output"
    taken = {t for node in graph.node for t in (*node.input, *node.output)} | {i.name for i in graph.initializer}
    names = {old: new for old, new in names.items() if old == new or new not in taken}
    for value in (*graph.input, *graph.output):
        value.name = names.get(value.name, value.name)
    for node in graph.node:
        node.input[:] = [names.get(t, t) for t in node.input]
        node.output[:] = [names.get(t, t) for t in node.output]
    return proto.SerializeToString(deterministic=True)


_TRAINERS: dict[str, Any] = {"torch": _TorchTrainer, "keras": _KerasTrainer}


# -- public API ------------------------------------------------------------------------------------


def names() -> list[str]:
    return sorted(SPECS)


def describe() -> dict[str, str]:
    return {name: SPECS[name].description for name in names()}


def get(name: str, *, seed: int = 0, cache: ArtifactCache | None = None) -> Model:
    """The zoo model `name`, trained on first use and cached afterwards."""
    if name not in SPECS:
        raise UnknownNameError(f"unknown zoo model {name!r}; the zoo has {names()}")
    spec = SPECS[name]
    trainer = _TRAINERS[spec.framework]
    cache = cache or ArtifactCache()
    # For torch models the key is unchanged from before the trainers were split out (same entries).
    parts = {"zoo": name, "recipe": spec.recipe_version, "seed": seed, **trainer.versions()}
    # Every trainer writes model.onnx and training.json; the cache checks every file of the entry
    # against its checksum before _assemble loads any of them (a damaged one is retrained).
    entry = cache.get_or_build(parts, lambda tmp: _train_into(spec, seed, tmp), files=("model.onnx", "training.json"))
    return _assemble(spec, entry.path, seed)


def _preprocess(spec: ZooSpec, data: datasets.Dataset, stats: dict[str, list[float]] | None) -> datasets.Dataset:
    if not spec.standardize or stats is None:
        return data
    X = (data.X - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)
    return replace(data, X=X, meta={**data.meta, "preprocessing": "standardized with the training split's mean and std"})


def _train_into(spec: ZooSpec, seed: int, out: Path) -> None:
    train, _ = spec.dataset().split(test_fraction=0.25, seed=seed)
    if spec.reconstructs is not None:  # an autoencoder learns what the background looks like
        train = train.subset(train.y != train.signal_class)
    stats = {"mean": train.X.mean(axis=0).tolist(), "std": (train.X.std(axis=0) + 1e-6).tolist()} if spec.standardize else None
    train = _preprocess(spec, train, stats)
    started = time.perf_counter()
    record = _TRAINERS[spec.framework].train(spec, train, seed, out)
    record = {"stats": stats, **record, "seed": seed, "framework": spec.framework, "train_s": time.perf_counter() - started}
    (out / "training.json").write_text(json.dumps(record, indent=1))


def _assemble(spec: ZooSpec, path: Path, seed: int) -> Model:
    record = json.loads((path / "training.json").read_text())
    model = _TRAINERS[spec.framework].load(spec, path)
    _, test = spec.dataset().split(test_fraction=0.25, seed=seed)
    model.data = _preprocess(spec, test, record["stats"])
    if spec.reconstructs is not None:
        model.task, model.reconstructs = "anomaly", spec.reconstructs
    if spec.fixed_point is not None:
        model.meta["fixed_point"] = dict(spec.fixed_point)
    model.meta.update({"zoo": spec.name, "description": spec.description, "training": record, "artifact": str(path)})
    return model
