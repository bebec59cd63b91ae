"""Small reference networks of the kinds trigger people run, trained here, deterministically.

`get(name)` returns a `yukti.Model` with its torch module and its evaluation data (the held-out
split, preprocessed the way the model expects). Training runs once; the ONNX form, weights and
preprocessing go to the artifact cache keyed by the recipe, seed and torch version.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

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
    build: Callable[[], Any]  # returns an untrained torch.nn.Module
    epochs: int
    batch_size: int
    learning_rate: float
    standardize: bool
    recipe_version: int = 1  # bump when the recipe changes: it is part of the cache key


def _jet_dnn() -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
        nn.Linear(32, 5), nn.Softmax(dim=1),
    )


def _cluster_cnn() -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(16 * 4 * 4, 32), nn.ReLU(), nn.Linear(32, 3), nn.Softmax(dim=1),
    )


SPECS: dict[str, ZooSpec] = {
    "jet_dnn": ZooSpec(
        "jet_dnn", "jet tagger 16-64-32-32-5 (ReLU, softmax) of the hls4ml tutorial, on jets_synthetic",
        datasets.jets_synthetic, _jet_dnn, epochs=12, batch_size=256, learning_rate=3e-3, standardize=True,
    ),
    "cluster_cnn": ZooSpec(
        "cluster_cnn", "Conv2D net on 16x16 pixel-cluster charge maps (single/inclined/merged), on pixel_clusters_synthetic",
        datasets.pixel_clusters_synthetic, _cluster_cnn, epochs=6, batch_size=128, learning_rate=3e-3, standardize=False,
    ),
}


def names() -> list[str]:
    return sorted(SPECS)


def describe() -> dict[str, str]:
    return {name: SPECS[name].description for name in names()}


def get(name: str, *, seed: int = 0, cache: ArtifactCache | None = None) -> Model:
    """The zoo model `name`, trained on first use and cached afterwards."""
    if name not in SPECS:
        raise UnknownNameError(f"unknown zoo model {name!r}; the zoo has {names()}")
    spec = SPECS[name]
    import torch

    cache = cache or ArtifactCache()
    parts = {"zoo": name, "recipe": spec.recipe_version, "seed": seed, "torch": torch.__version__.split("+")[0]}
    entry = cache.get_or_build(parts, lambda tmp: _train_into(spec, seed, tmp))
    return _assemble(spec, entry.path, seed)


def _preprocess(spec: ZooSpec, data: datasets.Dataset, stats: dict[str, list[float]] | None) -> datasets.Dataset:
    if not spec.standardize or stats is None:
        return data
    X = (data.X - np.asarray(stats["mean"], np.float32)) / np.asarray(stats["std"], np.float32)
    return replace(data, X=X, meta={**data.meta, "preprocessing": "standardized with the training split's mean and std"})


def _train_into(spec: ZooSpec, seed: int, out: Path) -> None:
    import torch

    train, _ = spec.dataset().split(test_fraction=0.25, seed=seed)
    stats = {"mean": train.X.mean(axis=0).tolist(), "std": (train.X.std(axis=0) + 1e-6).tolist()} if spec.standardize else None
    train = _preprocess(spec, train, stats)

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
    (out / "training.json").write_text(json.dumps({"stats": stats, "loss_per_epoch": history, "seed": seed}, indent=1))


def _assemble(spec: ZooSpec, path: Path, seed: int) -> Model:
    import torch

    record = json.loads((path / "training.json").read_text())
    module = spec.build()
    module.load_state_dict(torch.load(path / "weights.pt", weights_only=True))
    module.eval()
    _, test = spec.dataset().split(test_fraction=0.25, seed=seed)
    model = from_onnx((path / "model.onnx").read_bytes(), name=spec.name, origin=f"yukti.zoo ({spec.description})")
    model.source = "torch"
    model.torch_module = module
    model.data = _preprocess(spec, test, record["stats"])
    model.meta.update({"zoo": spec.name, "description": spec.description, "training": record, "artifact": str(path)})
    return model
