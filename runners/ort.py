"""`onnxruntime`: Microsoft's ONNX Runtime, CPU by default, CUDA when asked for and present."""

from __future__ import annotations

from typing import Any

import numpy as np

from yukti.errors import BackendUnavailableError
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Runner, package_version

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    description = "ONNX Runtime InferenceSession"
    packages = ("onnxruntime",)
    options = {
        "threads": Option(1, type=int, minimum=1, artifact=False, doc="intra-op threads (inter-op: 1)"),
        "graph_optimization_level": Option("all", choices=tuple(_LEVELS), doc="ONNX Runtime's graph optimisations"),
        "device": Option("cpu", choices=("cpu", "cuda")),
        "providers": Option(None, type=(list, tuple), nullable=True, check=lambda value: _provider_list(value),
                            doc="explicit execution providers (names or (name, options) pairs); overrides `device`"),
    }

    @classmethod
    def version(cls) -> str:
        return package_version("onnxruntime") or package_version("onnxruntime-gpu")

    def _prepare(self, model: Model, *, threads: int, graph_optimization_level: str, device: str, providers: Any) -> dict[str, Any]:
        import onnxruntime as ort

        present = ort.get_available_providers()
        if providers is None:
            if device == "cuda":
                if "CUDAExecutionProvider" not in present:
                    raise BackendUnavailableError(f"device='cuda' needs onnxruntime's CUDAExecutionProvider; this build has {present}")
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                providers = ["CPUExecutionProvider"]
        missing = [p for p in providers if (p if isinstance(p, str) else p[0]) not in present]
        if missing:
            raise BackendUnavailableError(f"onnxruntime providers {missing} are not in this build ({present})")

        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[graph_optimization_level])
        options.log_severity_level = 3
        self._session = ort.InferenceSession(model.onnx_bytes, sess_options=options, providers=providers)
        self._input_names = [i.name for i in self._session.get_inputs()]
        return {"providers": self._session.get_providers(), "artifact_bytes": len(model.onnx_bytes)}

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self._session.run(None, dict(zip(self._input_names, arrays)))


def _provider_list(providers: list | tuple) -> list:
    """For the `providers` option: names, or (name, {option: value}) pairs, as ONNX Runtime takes them."""
    def valid(item: Any) -> bool:
        return isinstance(item, str) or (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                                         and isinstance(item[1], dict))

    if not providers or not all(valid(item) for item in providers):
        raise ValueError("a non-empty list of provider names or (name, options dict) pairs")
    return list(providers)
