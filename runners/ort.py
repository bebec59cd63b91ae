"""`onnxruntime`: Microsoft's ONNX Runtime, CPU by default, CUDA when asked for and present."""

from __future__ import annotations

from typing import Any

import numpy as np

from yukti.errors import BackendUnavailableError
from yukti.model import Model
from yukti.runner import Runner, import_status, package_version

_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class OnnxRuntimeRunner(Runner):
    name = "onnxruntime"
    description = "ONNX Runtime InferenceSession"
    default_options = {
        "threads": 1,  # intra-op threads
        "graph_optimization_level": "all",  # disable | basic | extended | all
        "device": "cpu",  # cpu | cuda
        "providers": None,  # explicit provider list overrides `device`
    }

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return import_status("onnxruntime")

    @classmethod
    def version(cls) -> str:
        return package_version("onnxruntime") or package_version("onnxruntime-gpu")

    def _prepare(self, model: Model, *, threads: int, graph_optimization_level: str, device: str, providers: Any) -> dict[str, Any]:
        import onnxruntime as ort

        if graph_optimization_level not in _LEVELS:
            raise ValueError(f"graph_optimization_level must be one of {list(_LEVELS)}; got {graph_optimization_level!r}")
        present = ort.get_available_providers()
        if providers is None:
            if device == "cuda":
                if "CUDAExecutionProvider" not in present:
                    raise BackendUnavailableError(f"device='cuda' needs onnxruntime's CUDAExecutionProvider; this build has {present}")
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            elif device == "cpu":
                providers = ["CPUExecutionProvider"]
            else:
                raise ValueError(f"device must be 'cpu' or 'cuda'; got {device!r}")
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
