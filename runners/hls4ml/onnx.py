"""The ONNX source: the model's ONNX form, cleaned by qonnx, through hls4ml's ONNX converter.

hls4ml reads ONNX only after qonnx has rewritten it (static shapes at batch 1, folded constants,
channels-last layout, Gemm as MatMul + Add). That clean-up takes ~0.1 s and supports(), prepare()
and a diagnosis all need it, so the cleaned graph is kept per model content hash, a few at most.
Per-particle layers and the mean over the particles (DeepSets) are rewritten on the way
(onnx_rewrite.py says why and how).
"""

from __future__ import annotations

import functools
import warnings
import weakref
from typing import Any

import numpy as np

from yukti.runners.hls4ml.frontend import Frontend, quiet
from yukti.runners.hls4ml.onnx_rewrite import for_qonnx, hls4ml_view, mean_over_positions
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
    # qonnx and hls4ml turn node and tensor names into C++: derived identifiers only (safe_names);
    # the Tensordot fold must come before qonnx's batch-size change breaks its Reshape
    wrapper = cleanup_model(ModelWrapper(for_qonnx(sanitized_onnx(model.onnx))), override_inpsize=1)
    wrapper = wrapper.transform(ConvertToChannelsLastAndClean())
    with warnings.catch_warnings():
        # qonnx warns for every Gemm past opset 9; the Gemm attributes it reads (alpha, beta, transA/B)
        # mean the same in every opset, and the self-check would catch a wrong conversion
        warnings.filterwarnings("ignore", message="The GemmToMatMul transformation only offers", category=UserWarning)
        wrapper = wrapper.transform(GemmToMatMul())
    return cleanup_model(wrapper)


def cleaned(model: Model) -> Any:
    """The qonnx ModelWrapper hls4ml converts (shared: do not modify it)."""
    return _cleaned_by_content(_ByContent(model))


@functools.lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    import hls4ml.converters

    return frozenset(hls4ml.converters.get_supported_onnx_layers())


# Attention as one operator: ONNX's own (opset 23) and onnxruntime's contrib ops.
_ATTENTION_OPS = {"Attention", "MultiHeadAttention", "GroupQueryAttention", "PackedAttention",
                  "DecoderMaskedMultiHeadAttention", "SparseAttention"}
# Products hls4ml's ONNX frontend takes only with a constant second operand (MatMul -> Dense), or
# not at all (Einsum).
_PRODUCTS = {"MatMul", "Einsum"}


def onnx_attention(proto: Any) -> tuple[tuple[str, str], ...]:
    """(op, node) of each attention operator and each product of two activations (q @ k^T, scores
    @ v) in an ONNX graph, named as the file names them."""
    graph = proto.graph
    constant = {init.name for init in graph.initializer}
    for node in graph.node:  # in topological order: what only constants feed is a constant
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(name in constant for name in inputs)):
            constant.update(node.output)
    found = []
    for i, node in enumerate(graph.node):
        operands = [name for name in node.input if name]
        if node.op_type in _ATTENTION_OPS or (node.op_type in _PRODUCTS and len(operands) >= 2
                                               and not any(name in constant for name in operands[:2])):
            found.append((node.op_type, node.name or f"#{i}"))
    return tuple(found)


class OnnxFrontend(Frontend):
    source = "onnx"

    def attention(self, model: Model) -> tuple[tuple[str, str], ...]:
        return onnx_attention(model.onnx)

    def attention_detail(self) -> str:
        return ("its ONNX frontend makes a MatMul a Dense only when the second operand is a constant, so a "
                "MatMul of two activations (q @ k^T, scores @ v) has no converter")

    def unsupported_layers(self, model: Model) -> tuple[tuple[str, str], ...]:
        try:
            with quiet():
                graph = cleaned(model).graph
        except Exception as exc:
            raise UnsupportedModelError(f"qonnx could not clean the ONNX graph for hls4ml ({type(exc).__name__}: {exc})") from exc
        known = _known()
        missing = []
        for node in graph.node:
            if node.op_type == "ReduceMean":
                if not isinstance(mean_over_positions(cleaned(model), node), tuple):
                    missing.append((node.op_type, node.name))
            elif node.op_type not in known:
                missing.append((node.op_type, node.name))
        return tuple(missing)

    def config(self, model: Model, **common: Any) -> dict[str, Any]:
        import hls4ml

        return hls4ml.utils.config_from_onnx_model(hls4ml_view(cleaned(model)), **common)

    def convert(self, model: Model, config: dict[str, Any], **kwargs: Any) -> Any:
        import hls4ml

        return hls4ml.converters.convert_from_onnx_model(hls4ml_view(cleaned(model)), hls_config=config, **kwargs)

    def float_activations(self, model: Model, hls_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        """The cleaned graph (batch 1) evaluated sample by sample, asked for each layer's tensor;
        by qonnx's executor when it holds qonnx's channels-last ops (convolutions, and the
        per-particle layers onnx_rewrite.py makes), which ONNX's reference evaluator does not know."""
        graph = cleaned(model)
        tensor_of = {layer.name: layer.outputs[0] for layer in hls_model.get_layers() if layer.outputs}
        known = {v.name for v in graph.graph.value_info} | {o.name for o in graph.graph.output}
        wanted = {name: tensor for name, tensor in tensor_of.items() if tensor in known}
        input_name = graph.graph.input[0].name
        shape = graph.get_tensor_shape(input_name)
        if any(node.domain.startswith("qonnx") for node in graph.graph.node):
            from qonnx.core.onnx_exec import execute_onnx

            def run(sample: np.ndarray) -> list[np.ndarray]:
                context = execute_onnx(graph, {input_name: sample}, return_full_exec_context=True)
                return [context[tensor] for tensor in wanted.values()]
        else:
            from onnx.reference import ReferenceEvaluator

            evaluator = ReferenceEvaluator(graph.model)

            def run(sample: np.ndarray) -> list[np.ndarray]:
                return evaluator.run(list(wanted.values()), {input_name: sample})
        rows = [run(x[i].reshape(shape)) for i in range(len(x))]
        return {name: np.concatenate([r[j] for r in rows]) for j, name in enumerate(wanted)}


FRONTEND = OnnxFrontend()
