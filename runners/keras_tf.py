"""`keras`: the TensorFlow/Keras baseline for Keras-trained models.

Calls the original Keras model inside one traced `tf.function` with a free batch dimension, through
its ConcreteFunction (half the per-call overhead of the polymorphic function here: ~250 against
~480 us at batch 1; eager `model(x)` costs ~4.5 ms and `predict` is slower still). Option
`jit_compile=True` compiles the function with XLA (one compilation per new batch size).

TensorFlow's thread pools are process-wide and fixed when TensorFlow initialises: `threads` is
applied when that has not happened yet, and `info` records what actually applies either way.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from yukti.cache import ArtifactCache
from yukti.errors import BackendUnavailableError, YuktiError
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Runner, Support


class KerasRunner(Runner):
    name = "keras"
    description = "TensorFlow/Keras: the original Keras model in a tf.function (optionally XLA)"
    packages = ("tensorflow", "keras")  # version(): tensorflow's
    options = {
        "threads": Option(1, type=int, minimum=1, artifact=False,
                          doc="TensorFlow intra-op threads: process-wide, settable only before TensorFlow initialises"),
        "jit_compile": Option(False, type=bool, doc="True: tf.function(jit_compile=True), compiled by XLA"),
        "device": Option("cpu", choices=("cpu", "cuda")),
    }
    # TensorFlow executes one function from several Python threads at once; the traced graph holds
    # no per-call state (inference, training=False). Checked by the contract's concurrency test.
    thread_safe = True

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:
        import keras

        backend = keras.backend.backend()
        if backend != "tensorflow":
            return False, f"keras runs on its {backend!r} backend here; this runner needs KERAS_BACKEND=tensorflow"
        return True, ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        if model.keras_model is None:
            return Support(
                False,
                reason=f"keras needs the original Keras model (model {model.name!r} was loaded from {model.source}); "
                "it runs Keras-trained networks and does not rebuild one from ONNX or torch",
                by_design=True,
            )
        if not callable(model.keras_model):
            return Support(False, reason=f"model.keras_model is a {type(model.keras_model).__name__}, not a callable Keras model")
        return Support(True)

    def _prepare(self, model: Model, *, threads: int, jit_compile: bool, device: str) -> dict[str, Any]:
        import keras
        import tensorflow as tf

        if device == "cuda" and not tf.config.list_physical_devices("GPU"):
            raise BackendUnavailableError(
                "device='cuda' but TensorFlow sees no GPU (tf.config.list_physical_devices('GPU') is empty; "
                f"TensorFlow {tf.__version__} built with CUDA: {tf.test.is_built_with_cuda()})"
            )
        thread_info = _apply_threads(tf, threads)

        network = model.keras_model
        specs = [tf.TensorSpec(spec.shape, tf.as_dtype(spec.dtype)) for spec in model.inputs]
        n_inputs = len(specs)

        def forward(*xs: Any) -> Any:
            return network(xs[0] if n_inputs == 1 else list(xs), training=False)

        self._device = "/GPU:0" if device == "cuda" else "/CPU:0"
        self._output_names = list(getattr(network, "output_names", None) or [])
        function = tf.function(forward, input_signature=specs, jit_compile=jit_compile)
        try:
            with tf.device(self._device):
                self._function = function.get_concrete_function()
                # Trace and (with XLA) compile batch 1 now, so failures surface in prepare, timed.
                self._run(model.example_inputs(1))
        except Exception as exc:
            what = "XLA compilation (jit_compile=True)" if jit_compile else "tracing the Keras model in tf.function"
            raise YuktiError(f"keras: {what} failed for model {model.name!r}: {type(exc).__name__}: {exc}") from exc

        artifact = _saved_model(model, keras.__version__, tf.__version__)
        return {
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__},
            "jit_compile": jit_compile,
            "device": self._device,
            "call": "ConcreteFunction of tf.function(jit_compile=True)" if jit_compile else "ConcreteFunction of tf.function",
            **thread_info,
            **artifact,
        }

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import tensorflow as tf

        with tf.device(self._device):
            out = self._function(*arrays)
        if isinstance(out, dict):  # Keras models with named outputs: the model's output order
            outs = [out[k] for k in self._output_names] if set(self._output_names) == set(out) else list(out.values())
        elif isinstance(out, (list, tuple)):
            outs = list(out)
        else:
            outs = [out]
        return [o.numpy() for o in outs]


def _apply_threads(tf: Any, threads: int) -> dict[str, Any]:
    """Ask for `threads` intra-op and one inter-op thread; report what TensorFlow actually uses.

    TensorFlow refuses a change once it has initialised (RuntimeError); then the pools it started
    with stay, and `threads_applied` is False with the reason. 0 in TensorFlow's getters means its
    default: as many threads as cores.
    """
    from yukti.toolchain import pin_tensorflow_threads, tensorflow_threads  # the engine sizes the pools the same way

    applied = pin_tensorflow_threads(threads)
    pools = tensorflow_threads()
    intra, inter = pools["intra_op"], pools["inter_op"]
    intra_used, inter_used = intra or os.cpu_count() or 0, inter or os.cpu_count() or 0
    info: dict[str, Any] = {
        "threads_process_wide": True,
        "tf_intra_op_threads": intra_used,
        "tf_inter_op_threads": inter_used,
        "threads_applied": intra_used == threads,
        "threads_effective": intra_used,  # the engine records this in the results' threads column
    }
    if not applied and (intra_used != threads or inter_used != 1):
        info["threads_note"] = (
            "TensorFlow was already initialised in this process, so its thread pools "
            f"could not be changed: it uses {intra_used} intra-op and {inter_used} inter-op thread(s) "
            f"(0 configured means TensorFlow's default, all cores) where {threads} and 1 were asked for"
        )
    return info


def _saved_model(model: Model, keras_version: str, tf_version: str) -> dict[str, Any]:
    """The deployable artifact of this backend is the .keras file: save it once into the cache and
    report its size. A model Keras cannot serialise is still runnable; then the weights' bytes count."""
    network = model.keras_model
    try:
        entry = ArtifactCache().get_or_build(
            {"backend": "keras", "model": model.hash, "keras": keras_version, "tensorflow": tf_version, "artifact": "model.keras"},
            lambda tmp: network.save(tmp / "model.keras"),
        )
    except Exception as exc:  # subclassed models without get_config(), custom layers...
        weights = sum(int(np.asarray(w).nbytes) for w in network.get_weights())
        return {"artifact_path": None, "artifact_bytes": weights, "artifact_kind": f"weights only (.keras save failed: {exc})"}
    path = entry.path / "model.keras"
    return {"artifact_path": str(path), "artifact_bytes": path.stat().st_size, "artifact_kind": ".keras file",
            "cache_hit": entry.hit, "build_s": entry.manifest["build_s"]}
