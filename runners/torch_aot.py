"""`torch_aot`: AOTInductor, the ahead-of-time compiled libtorch package CMS runs in production.

`torch.export` traces the model (its original module, or the ONNX graph converted by onnx2torch
after its shape arithmetic is folded into constants: runners/torch_common.py) with a dynamic batch
dimension; `torch._inductor.aoti_compile_and_package` compiles it to a `.pt2`
package in the shared artifact cache, so every later process loads it in milliseconds instead of
compiling for ~35 s; `aoti_load_package` loads it.
"""

from __future__ import annotations

import platform
import threading
from pathlib import Path
from typing import Any

import numpy as np

from yukti.runners import torch_common
from yukti.cache import ArtifactCache
from yukti.errors import InputError, UnsupportedModelError, YuktiError
from yukti.model import Model
from yukti.options import Option, OptionError
from yukti.runner import Runner, Support
from yukti.toolchain import compiler_version

PACKAGE = "model.pt2"
# Bumped when the way a package is built changes, so old cache entries are not reused.
FORMAT = 1


def _target(device: str) -> dict[str, Any]:
    """What the compiled code depends on besides the model and torch: a CPU package is built for
    the vector ISA inductor picks on this machine (avx2, avx512...) by the host compiler; a CUDA
    one for the GPU's architecture and the CUDA toolkit."""
    import torch

    if device == "cuda":
        return {"gpu": torch.cuda.get_device_name(), "capability": list(torch.cuda.get_device_capability()), "cuda": torch.version.cuda}
    from torch._inductor import cpp_builder

    # The CPU features inductor chooses its vector code from, read from torch's cpuinfo in
    # microseconds: inductor's own pick_vec_isa() compiles a probe (1.3 s here), which a cache hit
    # should not pay.
    features = sorted(name[4:-10] for name in dir(torch.cpu) if name.startswith("_is_") and name.endswith("_supported") and getattr(torch.cpu, name)())
    return {
        "machine": platform.machine(), "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_features": features,
        "compiler": compiler_version(cpp_builder.get_cpp_compiler()) or cpp_builder.get_cpp_compiler(),
    }


def _failing_layer(exc: BaseException, module: Any) -> str | None:
    """The innermost submodule whose `forward` was running when tracing failed.

    Found post mortem from the traceback frames (their `self`), so the trace itself carries no
    hooks. Follows the exception chain because torch often re-raises its own error type.
    """
    names = {id(m): name for name, m in module.named_modules()}
    found = None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        tb = current.__traceback__
        while tb is not None:
            owner = tb.tb_frame.f_locals.get("self")
            if owner is not None and id(owner) in names and tb.tb_frame.f_code.co_name == "forward":
                name = names[id(owner)]
                found = f"{name or '<root>'} ({type(owner).__name__})"
            tb = tb.tb_next
        if found:
            return found
        current = current.__cause__ or current.__context__
    return None


class TorchAOTRunner(Runner):
    name = "torch_aot"
    description = "AOTInductor: torch.export + aoti_compile_and_package (.pt2), cached across processes"
    packages = ("torch",)
    # Batch sizes the package accepts. torch.export turns a dynamic dimension into a constant when
    # the example has size 1 (0/1 specialisation), so the example batch is >= 2 while the declared
    # range may still start at 1. min_batch == max_batch compiles a static batch.
    options = {
        "threads": torch_common.THREADS,  # not part of the package
        "source": torch_common.SOURCE,
        "device": torch_common.DEVICE,
        "min_batch": Option(1, type=int, minimum=1, doc="smallest batch size the package accepts"),
        "max_batch": Option(65536, type=int, minimum=1, doc="largest batch size the package accepts"),
    }

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:
        import torch

        if not hasattr(torch._inductor, "aoti_compile_and_package"):
            return False, f"torch {torch.__version__} has no torch._inductor.aoti_compile_and_package (needs torch >= 2.6)"
        return True, ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        # Same inputs as the eager runner (module, or onnx2torch conversion); whether torch.export
        # can trace the result is in general only known by tracing, which is `prepare`'s job. One
        # case is known without: after the shape arithmetic is folded (torch_common), an input
        # that onnx2torch reads as a value (a Reshape target, Squeeze axes, Slice bounds...) is
        # still computed at run time. Its module reads that tensor's values at every call, which
        # torch.export cannot trace (a data-dependent shape).
        support = torch_common.supports(model)
        if not support or model.torch_module is not None:
            return support
        dynamic = torch_common.runtime_values(torch_common.convertible_onnx(model))
        if dynamic:
            op, node, name = dynamic[0]
            more = f" (and {len(dynamic) - 1} more such input(s))" if len(dynamic) > 1 else ""
            return Support(False, tuple((op, node) for op, node, _ in dynamic),
                           f"input {name!r} of {op} node {node!r}{more} is computed at run time, from the batch size or "
                           "from tensor values, not from constants and fixed dimensions alone; onnx2torch's module reads "
                           "its values at every call, which torch.export cannot trace (data-dependent shape). Load the "
                           "torch module itself to use torch_aot", by_design=True)
        return support

    def _prepare(self, model: Model, *, threads: int, source: str, device: str, min_batch: int, max_batch: int) -> dict[str, Any]:
        import torch

        torch_common.check_device(device)
        origin = torch_common.origin(model, source)
        min_batch, max_batch = _bounds(model, min_batch, max_batch)
        torch.set_num_threads(threads)

        parts = {
            "model": model.hash, "backend": self.name, "format": FORMAT, "module_from": origin, "device": device,
            "min_batch": min_batch, "max_batch": max_batch, "torch": torch.__version__, "target": _target(device),
        }

        def build(tmp: Path) -> None:
            module = torch_common.module_on(model, origin, device)
            program = _export(model, module, origin, device, min_batch, max_batch)
            torch._inductor.aoti_compile_and_package(program, package_path=str(tmp / PACKAGE))

        def loads(tmp: Path) -> None:  # committed only once the package loads
            _load_package(tmp / PACKAGE)

        # The cache checks the package against its checksum before it is loaded here.
        entry = ArtifactCache().get_or_build(parts, build, files=(PACKAGE,), validate=loads)
        path = entry.path / PACKAGE
        self._package = _load_package(path)
        self._device = torch.device(device)
        self._bounds = (min_batch, max_batch)
        self._lock = threading.Lock()
        return {
            "module_from": origin,
            "artifact_path": str(path),
            "artifact_bytes": path.stat().st_size,
            "cache_hit": entry.hit,
            # Seconds spent exporting and compiling the package, by this process or, on a cache
            # hit, by the one that built it: the cost a cold cache would pay.
            "build_s": entry.manifest["build_s"],
            "min_batch": min_batch,
            "max_batch": max_batch,
            "target": parts["target"],
            "threads_process_wide": True,
            "concurrency": "calls from several threads are serialised by a lock (one model instance in the package)",
        }

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        batch = arrays[0].shape[0]
        low, high = self._bounds
        if not low <= batch <= high:
            # the compiled code does not check its shape guards; outside them it may read past buffers
            raise InputError(
                f"torch_aot package for model {self.model.name!r} was compiled for batch sizes {low}..{high}; got {batch}. "
                "Prepare it with other min_batch/max_batch options, or split the batch"
            )
        # The compiled kernels ask OpenMP for their thread count, which is per OS thread: a thread
        # torch has not seen yet gets OpenMP's default (all cores), not the `threads` option, and
        # its sums come out in another order (1 ulp apart). torch.get_num_threads() applies
        # torch's process-wide setting to this thread on first use, as eager torch ops do.
        torch.get_num_threads()
        tensors = [torch.from_numpy(torch_common.writeable(a)) for a in arrays]
        if self._device.type != "cpu":
            tensors = [t.to(self._device) for t in tensors]
        # boxed_run skips the pytree round trip of AOTICompiledModel.__call__ (two treespec
        # parses per call, noticeable at batch 1); inputs and outputs are flat tensor lists here.
        # The lock: unguarded concurrent calls deadlock (seen with torch 2.13). A caller waiting in
        # AOTI's model container for the one model instance holds the GIL, while the caller running
        # it needs the GIL to free its numpy-backed input tensor. The container runs one call at a
        # time anyway, so the lock costs no parallelism; waiting on it releases the GIL.
        with self._lock, torch.inference_mode():
            outputs = self._package.loader.boxed_run(tensors)
        return [o.cpu().numpy() for o in outputs]


def _load_package(path: Path) -> Any:
    import torch

    try:
        return torch._inductor.aoti_load_package(str(path))
    except Exception as exc:  # a package built by an incompatible libtorch, or a failed build
        raise YuktiError(
            f"could not load the AOTInductor package {path}: {type(exc).__name__}: {exc}. "
            "`yukti cache clear` removes it so that the next prepare rebuilds it"
        ) from exc


def _bounds(model: Model, min_batch: int, max_batch: int) -> tuple[int, int]:
    """The batch range to compile (each option is an integer >= 1 already): the options', or the
    model's own fixed batch size when it has one inside them."""
    if min_batch > max_batch:
        raise OptionError(f"backend 'torch_aot' needs min_batch <= max_batch; got min_batch={min_batch}, max_batch={max_batch}")
    fixed = {spec.shape[0] for spec in model.inputs if spec.shape[0] is not None}
    if fixed:
        # a model exported with a fixed batch size accepts only that size
        (size,) = fixed if len(fixed) == 1 else (None,)
        if size is None or not min_batch <= size <= max_batch:
            raise UnsupportedModelError(f"model {model.name!r} has fixed batch size(s) {sorted(fixed)}, outside min_batch..max_batch = {min_batch}..{max_batch}")
        return size, size
    return min_batch, max_batch


def _export(model: Model, module: Any, origin: str, device: str, min_batch: int, max_batch: int) -> Any:
    import torch

    static = min_batch == max_batch
    example_batch = min_batch if static else max(2, min_batch)
    examples = tuple(torch.from_numpy(a).to(device) for a in model.example_inputs(example_batch))
    if static:
        dynamic_shapes = None
    else:
        batch = torch.export.Dim("batch", min=min_batch, max=max_batch)
        dynamic_shapes = tuple({0: batch} for _ in examples)
    try:
        return torch.export.export(module, examples, dynamic_shapes=dynamic_shapes)
    except Exception as exc:
        layer = _failing_layer(exc, module)
        where = f" in layer {layer}" if layer else ""
        raise UnsupportedModelError(
            f"torch.export could not trace model {model.name!r} ({origin}) with batch sizes {min_batch}..{max_batch}{where}; "
            f"torch says: {type(exc).__name__}: {exc}"
        ) from exc
