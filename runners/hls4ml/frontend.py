"""What each source (Keras, torch, ONNX) must answer for hls4ml, and the one place that picks it.

hls4ml has a separate converter, configuration helper and layer vocabulary per source, and the
float activations a diagnosis compares with come from each source's own framework. Everything
that differs by source lives behind `Frontend`, so the rest of the package never branches on it.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import threading
from typing import Any, ClassVar, Iterator

import numpy as np

from yukti.model import Model

SOURCES = ("auto", "keras", "torch", "onnx")
_MODULES = {"keras": "yukti.runners.hls4ml.keras", "torch": "yukti.runners.hls4ml.torch", "onnx": "yukti.runners.hls4ml.onnx"}


# Held by quiet(), inside which every hls4ml conversion runs (build.convert; its torch.fx traces
# included), and by the traces yukti makes outside one (runners/hls4ml/torch.py). Both
# change process-wide state for their duration: redirect_stdout swaps sys.stdout, and torch.fx's
# tracer patches torch itself (nn.Module.__call__ and more). A precision scan builds its
# configurations in a thread pool; interleaved, two redirects can leave sys.stdout pointing at a
# buffer, and two traces unpatch each other ("Proxy object cannot be iterated") and can leave torch
# patched for the rest of the process. Reentrant: code under quiet() may take it again.
HLS4ML_LOCK = threading.RLock()


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """hls4ml prints its topology and progress on stdout; keep it for error messages only. One
    thread at a time (HLS4ML_LOCK)."""
    buffer = io.StringIO()
    with HLS4ML_LOCK, contextlib.redirect_stdout(buffer):
        yield buffer


class Frontend:
    """One source form of a model as hls4ml reads it. Stateless: one shared instance per source."""

    source: ClassVar[str] = ""

    def unsupported_layers(self, model: Model) -> tuple[tuple[str, str], ...]:
        """(type, name) of each layer hls4ml cannot convert; UnsupportedModelError when it cannot tell."""
        raise NotImplementedError

    def kernel_sizes(self, model: Model) -> list[tuple[str, str, int]]:
        """(type, name, weights) of each layer with a weight kernel: supports() bounds these."""
        return onnx_kernel_sizes(model)

    def config(self, model: Model, **common: Any) -> dict[str, Any]:
        """hls4ml's configuration dict for the model (`common`: granularity, backend, precision, reuse)."""
        raise NotImplementedError

    def convert(self, model: Model, config: dict[str, Any], **kwargs: Any) -> Any:
        """The hls4ml ModelGraph (`kwargs`: output_dir, project_name, backend, io_type, ...)."""
        raise NotImplementedError

    def float_activations(self, model: Model, hls_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        """Float activations of `x`, keyed by hls4ml layer name, for the layers that can be matched."""
        raise NotImplementedError

    def attention(self, model: Model) -> tuple[tuple[str, str], ...]:
        """(type, name) of each attention layer or product of two activations (q @ k^T, scores @ v)
        hls4ml cannot convert from this source: a refusal by design (ATTENTION)."""
        return ()

    def attention_detail(self) -> str:
        """What this source's converter lacks for attention, for the refusal's reason."""
        return ""


# hls4ml 1.3 converts attention from one source only; checked in its converters: the attention
# handler is hls4ml/converters/keras_v3/hgq2/multi_head_attention.py (QMultiHeadAttention, as QEinsum
# layers); its ONNX MatMul becomes a Dense only with a constant second operand; its torch converter
# has no matmul/bmm/@ handler (only einsum); its Keras registry has no keras MultiHeadAttention.
ATTENTION = ("hls4ml 1.3 converts attention only from HGQ2's QMultiHeadAttention (a Keras layer of the hgq package, "
             "hls4ml/converters/keras_v3/hgq2/multi_head_attention.py), not from torch, ONNX or plain Keras "
             "MultiHeadAttention")


def onnx_kernel_sizes(model: Model) -> list[tuple[str, str, int]]:
    """Weights per Gemm/MatMul/Conv node of the model's ONNX form (the torch form's sizes too)."""
    inits = {init.name: int(np.prod(init.dims)) for init in model.onnx.graph.initializer}
    sizes = []
    for i, node in enumerate(model.onnx.graph.node):
        if node.op_type in ("Gemm", "MatMul", "Conv", "ConvTranspose"):
            size = max((inits.get(name, 0) for name in node.input[:2]), default=0)
            sizes.append((node.op_type, node.name or f"#{i}", size))
    return sizes


def choose_source(model: Model, source: str) -> str:
    """`source` when the model has that form; for "auto": keras, else torch (else its ONNX form when
    hls4ml can convert that and not the module), else onnx."""
    return pick_source(model, source)[0]


def pick_source(model: Model, source: str) -> tuple[str, str]:
    """(the source `choose_source` picks, why: for info() and the refusal)."""
    if source == "auto":
        if model.keras_model is not None:
            return "keras", "auto: the Keras model"
        if model.torch_module is None:
            return "onnx", "auto: the ONNX form (no Keras model or torch module)"
        # hls4ml's torch converter lacks some layers its ONNX one has (torch.mean: a DeepSets'
        # pooling); the module's own ONNX export then carries the same network to hls4ml
        missing = _missing(frontend_for("torch"), model)
        if missing and model.has_onnx and not _missing(frontend_for("onnx"), model):
            kinds = ", ".join(sorted({kind for kind, _ in missing}))
            return "onnx", (f"auto: the module's ONNX form, because hls4ml's torch converter has no converter for "
                            f"{kinds} and its ONNX converter takes the whole graph")
        return "torch", "auto: the torch module"
    present = {"keras": model.keras_model is not None, "torch": model.torch_module is not None, "onnx": model.has_onnx}
    if not present[source]:
        have = [s for s, ok in present.items() if ok]
        raise ValueError(f"hls4ml option source={source!r}: model {model.name!r} has no {source} form; it has {have}")
    return source, f"source={source!r}"


def _missing(frontend: Frontend, model: Model) -> tuple[tuple[str, str], ...]:
    """What stops hls4ml converting `model` from `frontend`'s source: its unconvertible layers and
    attention; one ("?", reason) entry when the source cannot be read."""
    from yukti.errors import UnsupportedModelError

    try:
        return frontend.attention(model) + frontend.unsupported_layers(model)
    except UnsupportedModelError as exc:
        return (("?", str(exc)),)


def frontend_for(source: str) -> Frontend:
    """The frontend of a chosen source ("keras", "torch" or "onnx"); its module is imported now."""
    return importlib.import_module(_MODULES[source]).FRONTEND
