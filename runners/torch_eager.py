"""`torch`: PyTorch eager execution, the framework baseline.

Runs the model's original `torch.nn.Module` when it has one; otherwise converts the ONNX graph with
onnx2torch (runners/torch_common.py, shared with torch_aot).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from yukti.runners import torch_common
from yukti.model import Model
from yukti.runner import Runner, Support


class TorchEagerRunner(Runner):
    name = "torch"
    description = "PyTorch eager (original module, or ONNX converted by onnx2torch)"
    packages = ("torch",)
    options = {"threads": torch_common.THREADS, "source": torch_common.SOURCE, "device": torch_common.DEVICE}

    @classmethod
    def supports(cls, model: Model) -> Support:
        return torch_common.supports(model)

    def _prepare(self, model: Model, *, threads: int, source: str, device: str) -> dict[str, Any]:
        import torch

        torch_common.check_device(device)
        torch.set_num_threads(threads)
        picked = torch_common.origin(model, source)
        self._module = torch_common.module_on(model, picked, device)
        self._device = torch.device(device)
        return {"module_from": picked, "threads_process_wide": True}

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self._module(*(torch.from_numpy(torch_common.writeable(a)).to(self._device) for a in arrays))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        return [o.detach().cpu().numpy() for o in outs]
