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
            X, y = torch.from_numpy(train.X), torch.from_numpy(train.y)
            # Softmax is part of the deployed model; train on log-probabilities of its output.
            loss_fn = torch.nn.NLLLoss()
            history = []
            for _ in range(spec.epochs):
                order = torch.randperm(len(X), generator=generator)
                total = 0.0
                for start in range(0, len(X), spec.batch_size):
                    index = order[start:start + spec.batch_size]
                    optimiser.zero_grad()
                    loss = loss_fn(torch.log(module(X[index]).clamp_min(1e-12)), y[index])
                    loss.backward()
                    optimiser.step()
                    total += loss.detach().item() * len(index)
                history.append(total / len(X))
            module.eval()
        finally:
            torch.set_num_threads(threads)
            torch.use_deterministic_algorithms(deterministic)

        from yukti.model import from_torch

        model = from_torch(module, torch.from_numpy(train.X[:1]), name=spec.name)
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
    model.meta.update({"zoo": spec.name, "description": spec.description, "training": record, "artifact": str(path)})
    return model
