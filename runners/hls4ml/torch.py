"""The torch source: the model's original torch module through hls4ml's (torch.fx) converter."""

from __future__ import annotations

import functools
import re
from typing import Any

import numpy as np

from yukti.runners.hls4ml.frontend import HLS4ML_LOCK, Frontend
from yukti.model import Model

# Containers and no-op modules that carry no computation of their own in a torch module tree.
_TRANSPARENT = {"Sequential", "ModuleList", "ModuleDict", "Identity", "Dropout"}


@functools.lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    import hls4ml.converters

    return frozenset(hls4ml.converters.get_supported_pytorch_layers()) | _TRANSPARENT


# Reductions hls4ml 1.3's torch converter has no handler for ("Unsupported function mean" at
# conversion): found up front by tracing, so supports() can say so without converting.
_UNCONVERTED_FUNCTIONS = {"mean", "sum", "prod", "amax", "amin", "std", "var", "norm", "logsumexp"}


def _unconverted_functions(module: Any) -> tuple[tuple[str, str], ...]:
    """(function, node) of each traced call hls4ml cannot convert; () when the module does not trace
    (hls4ml's own tracer decides then, at prepare)."""
    import torch.fx

    try:
        with HLS4ML_LOCK:  # torch.fx patches torch while it traces
            graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - an untraceable module is hls4ml's to judge
        return ()
    found = []
    for node in graph.nodes:
        if node.op in ("call_function", "call_method"):
            name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
            if name in _UNCONVERTED_FUNCTIONS:
                found.append((f"torch.{name}", node.name))
    return tuple(found)


# torch.nn's modules that are attention as a whole, and traced calls that multiply two activations.
_ATTENTION_MODULES = {"MultiheadAttention", "Transformer", "TransformerEncoder", "TransformerDecoder",
                      "TransformerEncoderLayer", "TransformerDecoderLayer"}
_PRODUCT_CALLS = {"matmul", "bmm", "baddbmm", "__matmul__", "scaled_dot_product_attention"}


def _traced_products(module: Any) -> tuple[tuple[str, str], ...] | None:
    """(call, node) of each traced matmul/bmm/@ whose operands are both activations, and each
    scaled_dot_product_attention; None when the module does not trace."""
    import torch.fx

    try:
        with HLS4ML_LOCK:  # torch.fx patches torch while it traces
            graph = torch.fx.symbolic_trace(module).graph
    except Exception:  # noqa: BLE001 - an untraceable module is judged from its ONNX form
        return None
    found = []
    for node in graph.nodes:
        if node.op not in ("call_function", "call_method"):
            continue
        name = node.target if isinstance(node.target, str) else getattr(node.target, "__name__", "")
        if name not in _PRODUCT_CALLS:
            continue
        operands = [a for a in node.args[:2] if isinstance(a, torch.fx.Node)]
        if name == "scaled_dot_product_attention" or (len(operands) == 2 and all(a.op != "get_attr" for a in operands)):
            found.append((f"torch.{name.strip('_')}", node.name))
    return tuple(found)


def _leaves(module: Any) -> Any:
    """(qualified name, module) of each leaf module: the ones that compute."""
    return ((name, m) for name, m in module.named_modules() if name and not list(m.children()))


class TorchFrontend(Frontend):
    source = "torch"

    def unsupported_layers(self, model: Model) -> tuple[tuple[str, str], ...]:
        known = _known()
        modules = tuple((type(m).__name__, name) for name, m in _leaves(model.torch_module) if type(m).__name__ not in known)
        return modules + _unconverted_functions(model.torch_module)

    def attention(self, model: Model) -> tuple[tuple[str, str], ...]:
        modules = tuple((type(m).__name__, name) for name, m in model.torch_module.named_modules()
                        if type(m).__name__ in _ATTENTION_MODULES and type(m).__module__.startswith("torch.nn"))
        products = _traced_products(model.torch_module)
        if products is None and model.has_onnx:  # written so torch.fx cannot trace it: its ONNX export tells
            from yukti.runners.hls4ml.onnx import onnx_attention

            products = onnx_attention(model.onnx)
        return modules + (products or ())

    def attention_detail(self) -> str:
        return ("its torch frontend has no converter for a matmul, bmm or @ of two activations, nor for "
                "nn.MultiheadAttention (of such products it takes torch.einsum only), and its ONNX frontend none for "
                "a MatMul of two activations")

    # kernel_sizes: from the ONNX form (the base class), which names every weight the module uses

    def config(self, model: Model, **common: Any) -> dict[str, Any]:
        import hls4ml

        shapes = [tuple(s.sample_shape) for s in model.inputs]
        return hls4ml.utils.config_from_pytorch_model(model.torch_module, shapes[0] if len(shapes) == 1 else shapes, **common)

    def convert(self, model: Model, config: dict[str, Any], **kwargs: Any) -> Any:
        import hls4ml

        return hls4ml.converters.convert_from_pytorch_model(model.torch_module, hls_config=config, **kwargs)

    def float_activations(self, model: Model, hls_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        layer_names = {layer.name for layer in hls_model.get_layers()}
        captured: dict[str, np.ndarray] = {}
        hooks = []
        for name, module in _leaves(model.torch_module):
            key = re.sub(r"\W", "_", name)
            for candidate in (key, f"_{key}"):  # hls4ml (torch.fx) prefixes names starting with a digit
                if candidate in layer_names:
                    hooks.append(module.register_forward_hook(
                        lambda _m, _i, out, k=candidate: captured.__setitem__(k, out.detach().numpy().copy())))
        try:
            with torch.inference_mode():
                model.torch_module(torch.from_numpy(x))
        finally:
            for hook in hooks:
                hook.remove()
        return captured


FRONTEND = TorchFrontend()
