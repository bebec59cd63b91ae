"""The ONNX source: the model's ONNX form, cleaned by qonnx, through hls4ml's ONNX converter.

hls4ml reads ONNX only after qonnx has rewritten it (static shapes at batch 1, folded constants,
channels-last layout, Gemm as MatMul + Add). That clean-up takes ~0.1 s and supports(), prepare()
and a diagnosis all need it, so the cleaned graph is kept per model content hash, a few at most.
"""

from __future__ import annotations

import functools
import weakref
from typing import Any

import numpy as np

from yukti.runners.hls4ml.frontend import Frontend, quiet
from yukti.errors import UnsupportedModelError
from yukti.model import Model
from yukti.safe_names import sanitized_onnx

CLEANED_KEPT = 8  # cleaned graphs kept in memory (small: one per model a process works on)


class _ByContent:
    """A model as a cache key: equal to another model with the same content hash (two loads of one
    file share an entry), and held weakly so the cache never keeps a model alive."""

    def __init__(self, model: Model) -> None:
        self.hash = model.hash
        self.model = weakref.ref(model)

    def __hash__(self) -> int:
        return hash(self.hash)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ByContent) and other.hash == self.hash


@functools.lru_cache(maxsize=CLEANED_KEPT)
def _cleaned_by_content(key: _ByContent) -> Any:
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.channels_last import ConvertToChannelsLastAndClean
    from qonnx.transformation.gemm_to_matmul import GemmToMatMul
    from qonnx.util.cleanup import cleanup_model

    model = key.model()  # alive: the caller holds it
    # qonnx and hls4ml turn node and tensor names into C++: derived identifiers only (safe_names)
    wrapper = cleanup_model(ModelWrapper(sanitized_onnx(model.onnx)), override_inpsize=1)
    wrapper = wrapper.transform(ConvertToChannelsLastAndClean())
    wrapper = wrapper.transform(GemmToMatMul())
    return cleanup_model(wrapper)


def cleaned(model: Model) -> Any:
    """The qonnx ModelWrapper hls4ml converts (shared: do not modify it)."""
    return _cleaned_by_content(_ByContent(model))


@functools.lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    import hls4ml.converters

    return frozenset(hls4ml.converters.get_supported_onnx_layers())


class OnnxFrontend(Frontend):
    source = "onnx"

    def unsupported_layers(self, model: Model) -> tuple[tuple[str, str], ...]:
        try:
            with quiet():
                graph = cleaned(model).graph
        except Exception as exc:
            raise UnsupportedModelError(f"qonnx could not clean the ONNX graph for hls4ml ({type(exc).__name__}: {exc})") from exc
        known = _known()
        return tuple((n.op_type, n.name) for n in graph.node if n.op_type not in known)

    def config(self, model: Model, **common: Any) -> dict[str, Any]:
        import hls4ml

        return hls4ml.utils.config_from_onnx_model(cleaned(model), **common)

    def convert(self, model: Model, config: dict[str, Any], **kwargs: Any) -> Any:
        import hls4ml

        return hls4ml.converters.convert_from_onnx_model(cleaned(model), hls_config=config, **kwargs)

    def float_activations(self, model: Model, hls_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        """The cleaned graph (batch 1) evaluated sample by sample, asked for each layer's tensor."""
        from onnx.reference import ReferenceEvaluator

        graph = cleaned(model)
        tensor_of = {layer.name: layer.outputs[0] for layer in hls_model.get_layers() if layer.outputs}
        known = {v.name for v in graph.graph.value_info} | {o.name for o in graph.graph.output}
        wanted = {name: tensor for name, tensor in tensor_of.items() if tensor in known}
        evaluator = ReferenceEvaluator(graph.model)
        input_name = graph.graph.input[0].name
        shape = graph.get_tensor_shape(input_name)
        rows = [evaluator.run(list(wanted.values()), {input_name: x[i].reshape(shape)}) for i in range(len(x))]
        return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(wanted)}


FRONTEND = OnnxFrontend()
