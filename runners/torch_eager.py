"""`torch`: PyTorch eager execution, the framework baseline.

Runs the model's original `torch.nn.Module` when it has one; otherwise converts the ONNX graph with
onnx2torch.
"""

from __future__ import annotations

import copy
import functools
import importlib
import sys
import types
from typing import Any

import numpy as np

from yukti.model import Model
from yukti.runner import Runner, Support, import_status, package_version
from yukti.safe_names import sanitized_onnx

# onnx2torch imports torchvision at import time for its NonMaxSuppression and RoiAlign converters
# only; PyPI's torchvision does not load beside the CPU torch wheel these machines use. Those two
# operators are refused instead.
_NEEDS_TORCHVISION = {"NonMaxSuppression", "RoiAlign"}


@functools.lru_cache(maxsize=1)
def _torchvision_works() -> bool:
    return import_status("torchvision")[0]


def _import_onnx2torch() -> Any:
    if "onnx2torch" in sys.modules or _torchvision_works():
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


class TorchEagerRunner(Runner):
    name = "torch"
    description = "PyTorch eager (original module, or ONNX converted by onnx2torch)"
    default_options = {
        "threads": 1,  # torch.set_num_threads: process-wide in PyTorch
        "source": "auto",  # auto | module | onnx
        "device": "cpu",  # cpu | cuda
    }

    @classmethod
    def available(cls) -> tuple[bool, str]:
        return import_status("torch")

    @classmethod
    def version(cls) -> str:
        return package_version("torch")

    @classmethod
    def supports(cls, model: Model) -> Support:
        if model.torch_module is not None:
            return Support(True)
        if not model.has_onnx:
            return Support(False, reason=f"no torch module and no ONNX form: {model._onnx_error}")
        try:
            _import_onnx2torch()
        except Exception as exc:
            return Support(False, reason=f"converting ONNX needs onnx2torch ({type(exc).__name__}: {exc}); pip install onnx2torch")
        from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY  # its only listing of converters

        known = {key.operation_type for key in _CONVERTER_REGISTRY if key.domain in ("", "ai.onnx")}
        if not _torchvision_works():
            known -= _NEEDS_TORCHVISION
        return Support.from_ops(model, known, "torch (onnx2torch)")

    def _prepare(self, model: Model, *, threads: int, source: str, device: str) -> dict[str, Any]:
        import torch

        if source not in ("auto", "module", "onnx"):
            raise ValueError(f"torch option source must be auto, module or onnx; got {source!r}")
        if device == "cuda" and not torch.cuda.is_available():
            from yukti.errors import BackendUnavailableError

            raise BackendUnavailableError("device='cuda' but torch sees no CUDA device")
        torch.set_num_threads(int(threads))
        if source == "module" and model.torch_module is None:
            raise ValueError(f"model {model.name!r} has no torch module (loaded from {model.source}); use source='onnx'")
        if model.torch_module is not None and source in ("auto", "module"):
            module, origin = model.torch_module, "original module"
        else:
            # torch.fx writes module names into Python source: hand it derived identifiers only
            module, origin = _import_onnx2torch().convert(sanitized_onnx(model.onnx)), "onnx2torch"
        target = torch.device(device)
        if any(t.device.type != target.type for t in [*module.parameters(), *module.buffers()]):
            module = copy.deepcopy(module).to(target)  # leave the user's module on its own device
        self._module = module.eval()
        self._device = torch.device(device)
        return {"module_from": origin, "threads_process_wide": True}

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self._module(*(torch.from_numpy(_writeable(a)).to(self._device) for a in arrays))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in outs]


def _writeable(array: np.ndarray) -> np.ndarray:
    """`array`, copied only when read-only (np.frombuffer, a read-only memmap, a broadcast view):
    torch.from_numpy warns on those, since a tensor has no read-only flag. Inference never writes."""
    return array if array.flags.writeable else array.copy()
