"""Yukti: run a small trained network fast, on every backend, measured side by side.

    import yukti
    model = yukti.load("jet.onnx")            # or yukti.load(module, example_input), yukti.load(keras_model)
    run = yukti.runner("onnxruntime", model)  # prepared and callable
    df = yukti.benchmark(model)               # every available backend, one tidy DataFrame
    scan = yukti.scan(model, max_auc_drop=0.005)  # fixed-point precisions against the physics (yukti.precision)
    cells = yukti.sweep("grid.toml")          # a grid of models x backends x options on Dask (yukti.sweep)

Importing yukti never imports a backend's framework: runners load on demand.
"""

from yukti import datasets, results, zoo
from yukti.cache import ArtifactCache
from yukti.chooser import Candidate, Choice, ConstraintCheck, NoBackendMeetsConstraints, Session, choose, pareto
from yukti.datasets import Dataset
from yukti.engine import TimingPolicy, benchmark
from yukti.errors import (
    BackendUnavailableError,
    InputError,
    ModelLoadError,
    UnknownBackendError,
    UnknownNameError,
    UnsupportedModelError,
    YuktiError,
)
from yukti.model import Model, TensorSpec, load
from yukti.registry import available_backends, backends, register, runner, runner_class, unregister
from yukti.options import Option, OptionError
from yukti.precision import profile, scan
from yukti.runner import BackendInfo, Capability, CapabilityError, Runner, RunnerInfo, Support
from yukti.sweep import sweep  # the module stays importable as `from yukti.sweep import ...`

__version__ = "0.1.0"

__all__ = [
    "ArtifactCache", "BackendInfo", "BackendUnavailableError", "Candidate", "Capability", "CapabilityError", "Option",
    "OptionError", "RunnerInfo", "Choice", "ConstraintCheck", "Dataset", "InputError", "Model", "ModelLoadError",
    "Runner", "Support", "TensorSpec", "TimingPolicy", "UnknownBackendError", "UnknownNameError",
    "NoBackendMeetsConstraints", "Session", "UnsupportedModelError", "YuktiError", "available_backends", "backends",
    "benchmark", "choose", "datasets", "load", "pareto", "profile", "scan", "sweep",
    "register", "results", "runner", "runner_class", "unregister", "zoo",
]
