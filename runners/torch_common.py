"""What the two torch backends (`torch` eager, `torch_aot`) share: the options they both take, which
models they can take (the original module, or the ONNX graph converted by onnx2torch), and getting
that module onto the requested device.
"""

from __future__ import annotations

import copy
import functools
import importlib
import sys
import types
from typing import Any

import numpy as np

from yukti.errors import BackendUnavailableError
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Support, import_status
from yukti.safe_names import sanitized_onnx

# onnx2torch imports torchvision at import time for its NonMaxSuppression and RoiAlign converters
# only; PyPI's torchvision does not load beside the CPU torch wheel these machines use. Those two
# operators are refused instead.
NEEDS_TORCHVISION = frozenset({"NonMaxSuppression", "RoiAlign"})
ORIGINAL, CONVERTED = "original module", "onnx2torch"

# Declared once for both backends.
THREADS = Option(1, type=int, minimum=1, artifact=False, doc="torch.set_num_threads: process-wide in PyTorch")
SOURCE = Option("auto", choices=("auto", "module", "onnx"), doc="the original torch module, or the ONNX graph via onnx2torch")
DEVICE = Option("cpu", choices=("cpu", "cuda"))


@functools.lru_cache(maxsize=1)
def torchvision_works() -> bool:
    return import_status("torchvision")[0]


def import_onnx2torch() -> Any:
    """onnx2torch, imported with a placeholder torchvision when the real one does not load; the
    interpreter's modules are left as they were."""
    if "onnx2torch" in sys.modules or torchvision_works():
        return importlib.import_module("onnx2torch")
    saved = {name: sys.modules.pop(name) for name in list(sys.modules) if name == "torchvision" or name.startswith("torchvision.")}
    placeholder, ops = types.ModuleType("torchvision"), types.ModuleType("torchvision.ops")

    def missing(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("torchvision is not usable here; NonMaxSuppression/RoiAlign cannot be converted")

    def lookup(name: str) -> Any:
        if name.startswith("__"):  # module protocol (__file__, __path__...): inspect and importlib probe these
            raise AttributeError(name)
        return missing

    ops.__getattr__ = lookup  # type: ignore[method-assign]
    placeholder.ops = ops  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": placeholder, "torchvision.ops": ops})
    try:
        return importlib.import_module("onnx2torch")
    finally:  # leave the user's interpreter as it was
        sys.modules.pop("torchvision", None)
        sys.modules.pop("torchvision.ops", None)
        sys.modules.update(saved)


def supports(model: Model) -> Support:
    """A torch module runs as it is; an ONNX graph needs a converter for every operator."""
    if model.torch_module is not None:
        return Support(True)
    if not model.has_onnx:
        return Support(False, reason=f"no torch module and no ONNX form: {model._onnx_error}")
    try:
        import_onnx2torch()
    except Exception as exc:
        return Support(False, reason=f"converting ONNX needs onnx2torch ({type(exc).__name__}: {exc}); pip install onnx2torch")
    from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY  # its only listing of converters

    known = {key.operation_type for key in _CONVERTER_REGISTRY if key.domain in ("", "ai.onnx")}
    if not torchvision_works():
        known -= NEEDS_TORCHVISION
    return Support.from_ops(model, known, "torch (onnx2torch)")


def origin(model: Model, source: str) -> str:
    """Which module `source` picks for `model`: ORIGINAL or CONVERTED."""
    if source == "module" and model.torch_module is None:
        raise ValueError(f"model {model.name!r} has no torch module (loaded from {model.source}); use source='onnx'")
    return ORIGINAL if model.torch_module is not None and source in ("auto", "module") else CONVERTED


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("device='cuda' but torch sees no CUDA device")


def module_on(model: Model, picked: str, device: str) -> Any:
    """The module `origin` picked, in eval mode on `device` (a copy when it has to move: the
    user's module stays where it was). torch.fx writes module names into Python source, so an ONNX
    graph is converted from its sanitized form (derived identifiers only)."""
    import torch

    module = model.torch_module if picked == ORIGINAL else import_onnx2torch().convert(sanitized_onnx(model.onnx))
    target = torch.device(device)
    if any(t.device.type != target.type for t in [*module.parameters(), *module.buffers()]):
        module = copy.deepcopy(module).to(target)
    return module.eval()


def writeable(array: np.ndarray) -> np.ndarray:
    """`array`, copied only when read-only (np.frombuffer, a read-only memmap, a broadcast view):
    torch.from_numpy warns on those, since a tensor has no read-only flag. Inference never writes."""
    return array if array.flags.writeable else array.copy()
