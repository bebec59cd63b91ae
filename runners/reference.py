"""`reference`: ONNX's own reference evaluator, the accuracy baseline every backend is compared to.

Slow on purpose-built numpy per node, but it is the ONNX specification executed as written, with no
fusion or reordering; `source="original"` evaluates the float framework object instead.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from yukti.model import Model
from yukti.options import Option
from yukti.runner import Runner, Support


class ReferenceRunner(Runner):
    name = "reference"
    description = "ONNX reference evaluator (onnx.reference), the float accuracy baseline"
    packages = ("onnx",)
    options = {"source": Option("onnx", choices=("onnx", "original"),
                                doc="evaluate the ONNX graph, or the original float framework object (torch module / Keras model)")}
    thread_safe = True  # calls are serialized by a lock: the evaluator keeps per-run state in Python objects

    @classmethod
    def supports(cls, model: Model) -> Support:
        if model.has_onnx:
            return Support(True)
        if model.torch_module is not None or model.keras_model is not None:
            return Support(True, reason="evaluates the original float model (no ONNX form)")
        return Support(False, reason=f"no ONNX form and no original model: {model._onnx_error}")

    def _prepare(self, model: Model, *, source: str) -> dict[str, Any]:
        self._lock = threading.Lock()
        if source == "onnx" and model.has_onnx:
            from onnx.reference import ReferenceEvaluator

            evaluator = ReferenceEvaluator(model.onnx)
            names = [spec.name for spec in model.inputs]
            self._call = lambda arrays: evaluator.run(None, dict(zip(names, arrays)))
            return {"evaluates": "onnx"}
        if model.torch_module is not None:
            import torch

            from yukti.runners.torch_common import writeable

            module = model.torch_module.eval()

            def call(arrays: list[np.ndarray]) -> list[np.ndarray]:
                with torch.inference_mode():
                    out = module(*(torch.from_numpy(writeable(a)) for a in arrays))
                outs = out if isinstance(out, (tuple, list)) else (out,)
                return [o.detach().cpu().numpy() for o in outs]

            self._call = call
            return {"evaluates": "torch module"}
        if model.keras_model is not None:
            keras_model = model.keras_model

            def call(arrays: list[np.ndarray]) -> list[np.ndarray]:
                out = keras_model(arrays if len(arrays) > 1 else arrays[0], training=False)
                outs = out if isinstance(out, (tuple, list)) else (out,)
                return [np.asarray(o) for o in outs]

            self._call = call
            return {"evaluates": "keras model"}
        raise ValueError(f"model {model.name!r} has no original framework object to evaluate")

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        with self._lock:
            return [np.asarray(o) for o in self._call(arrays)]
