"""`openvino`: Intel's OpenVINO runtime on the CPU, reading the model's ONNX through its ONNX frontend."""

from __future__ import annotations

import functools
import io
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from yukti.errors import UnsupportedModelError
from yukti.model import Model
from yukti.options import Option
from yukti.runner import Runner, Support

_HINTS = ("LATENCY", "THROUGHPUT")
# bf16 and f16 run on AMX / AVX512_BF16 / AVX512_FP16 at about three significant digits: a speed
# setting to ask for, never the default (the CPU plugin picks bf16 by itself where AMX exists).
_PRECISIONS = ("f32", "bf16", "f16")
# Placeholders a partial conversion leaves for ONNX nodes it could not convert: NotSupportedONNXNode
# in the release tested (constraints.txt); the frontend's framework-node types too, in case another
# release leaves those instead.
_UNCONVERTED = {"NotSupportedONNXNode", "ONNXFrameworkNode", "ONNXSubgraphFrameworkNode"}
# supports() converts the graph, so its answer is kept per model hash (a few dozen at most).
_SUPPORT_CACHE: dict[str, Support] = {}
_SUPPORT_CACHE_SIZE = 64
_SUPPORT_LOCK = threading.Lock()


class OpenVINORunner(Runner):
    name = "openvino"
    description = "OpenVINO runtime, CPU plugin (ONNX frontend)"
    packages = ("openvino",)
    options = {
        "threads": Option(1, type=int, minimum=1, artifact=False, doc="INFERENCE_NUM_THREADS of the compiled model"),
        "hint": Option("LATENCY", choices=_HINTS,
                       doc="PERFORMANCE_HINT: LATENCY (one stream: every thread works on each call) or THROUGHPUT "
                           "(threads split into streams: one call is slower, concurrent calls overlap)"),
        "precision": Option("f32", choices=_PRECISIONS, doc="INFERENCE_PRECISION_HINT; f32 keeps the float answer"),
    }

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:
        devices = _devices()
        if "CPU" not in devices:
            return False, f"OpenVINO's CPU plugin is not usable here (devices: {devices})"
        return True, ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        """Refuse the nodes OpenVINO's ONNX frontend cannot convert, by op type and node name: a
        partial conversion leaves a placeholder for each instead of stopping at the first."""
        if not model.has_onnx:
            return Support(False, reason=f"{cls.name} needs the ONNX form: {model._onnx_error}")
        with _SUPPORT_LOCK:
            known = _SUPPORT_CACHE.get(model.hash)
        if known is None:
            known = _frontend_support(model)
            with _SUPPORT_LOCK:
                if len(_SUPPORT_CACHE) >= _SUPPORT_CACHE_SIZE:
                    del _SUPPORT_CACHE[next(iter(_SUPPORT_CACHE))]
                known = _SUPPORT_CACHE.setdefault(model.hash, known)
        return known

    def _prepare(self, model: Model, *, threads: int, hint: str, precision: str) -> dict[str, Any]:
        import openvino

        frontend = _onnx_frontend()
        try:
            network = frontend.convert(frontend.load(io.BytesIO(model.onnx_bytes)))
        except Exception as exc:  # what supports() cannot see (a bad attribute): OpConversionFailure, RuntimeError
            raise UnsupportedModelError(
                f"OpenVINO's ONNX frontend cannot convert model {model.name!r}: {_message(exc)}") from exc
        # The ONNX graph marks the batch dynamic already; restating it with the rest of each input's
        # shape fixed lets the CPU plugin specialise every other dimension at compile time.
        shapes = {network.input(spec.name): openvino.PartialShape([-1, *spec.sample_shape])
                  for spec in model.inputs if spec.shape[0] is None and None not in spec.sample_shape}
        if shapes:
            network.reshape(shapes)
        self._compiled = openvino.Core().compile_model(network, "CPU", {
            "INFERENCE_NUM_THREADS": int(threads),
            "PERFORMANCE_HINT": hint,
            "INFERENCE_PRECISION_HINT": precision,
        })
        self._tensor = openvino.Tensor
        self._inputs = [self._compiled.input(spec.name) for spec in model.inputs]
        self._outputs = [self._compiled.output(spec.name) for spec in model.outputs]
        # An InferRequest owns its input and output buffers, so two threads must never share one:
        # each call takes an idle request from the pool (or makes one) and puts it back after.
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        self._idle.put(self._compiled.create_infer_request())
        get = self._compiled.get_property
        return {
            "artifact_bytes": len(model.onnx_bytes),
            "threads_effective": int(get("INFERENCE_NUM_THREADS")),
            "streams": int(get("NUM_STREAMS")),
            "inference_precision": get("INFERENCE_PRECISION_HINT").get_type_name(),
        }

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        try:
            request = self._idle.get_nowait()
        except queue.Empty:
            request = self._compiled.create_infer_request()
        try:
            # Tensors set one by one rather than `request.infer(arrays)`, whose input dispatch costs
            # more than a small net's inference. They wrap the validated arrays without a copy (they
            # are C-contiguous and outlive this synchronous call); the outputs are copied, since the
            # request reuses its buffers on its next call.
            for port, array in zip(self._inputs, arrays):
                request.set_tensor(port, self._tensor(array, shared_memory=True))
            request.infer(share_outputs=True)
            return [request.get_tensor(port).data.copy() for port in self._outputs]
        finally:
            self._idle.put(request)


@functools.lru_cache(maxsize=1)
def _devices() -> tuple[str, ...]:
    # asked once per process: a Core costs milliseconds, and `available()` is asked often
    import openvino

    return tuple(openvino.Core().available_devices)


def _onnx_frontend() -> Any:
    from openvino.frontend import FrontEndManager

    return FrontEndManager().load_by_framework("onnx")


def _frontend_support(model: Model) -> Support:
    try:
        frontend = _onnx_frontend()
        partial = frontend.convert_partially(frontend.load(io.BytesIO(model.onnx_bytes)))
    except Exception as exc:  # OpConversionFailure, RuntimeError...: a graph it cannot read at all
        return Support(False, reason=f"OpenVINO's ONNX frontend cannot read the model: {_message(exc)}")
    nodes = _onnx_nodes(model.onnx.graph)
    by_name = {node.name: i for i, (node, _) in enumerate(nodes) if node.name}
    by_output = {out: i for i, (node, _) in enumerate(nodes) for out in node.output}
    missing = []
    for op in _ops(partial):
        if op.get_type_name() not in _UNCONVERTED:
            continue
        # Its output tensors name the ONNX node (outputs are unique); failing that, the placeholder
        # carries the node's name. The node's own op type and name are reported.
        outputs = [name for port in op.outputs() for name in port.get_names() if name in by_output]
        index = by_output[outputs[0]] if outputs else by_name.get(op.get_friendly_name())
        if index is None:
            missing.append((op.get_attributes().get("ONNX_META_type", op.get_type_name()), op.get_friendly_name()))
            continue
        node, label = nodes[index]
        missing.append((node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}", label))
    if missing:
        ops = sorted({op for op, _ in missing})
        return Support(False, tuple(missing), f"OpenVINO's ONNX frontend cannot convert operator(s) {', '.join(ops)}")
    return Support(True)


def _ops(network: Any) -> Iterator[Any]:
    """Every op of a converted graph, the bodies of If and Loop included (a node the frontend could
    not convert there stays a placeholder inside the body)."""
    for op in network.get_ordered_ops():
        yield op
        if hasattr(op, "get_then_body"):  # If
            bodies = [op.get_then_body(), op.get_else_body()]
        elif hasattr(op, "get_function"):  # Loop, TensorIterator
            bodies = [op.get_function()]
        else:
            bodies = []
        for body in bodies:
            yield from _ops(body)


def _onnx_nodes(graph: Any, parent: str = "") -> list[tuple[Any, str]]:
    """(node, label) for every node of `graph` and its subgraphs; the label is the node's name, or
    its position (#i, under its parent's label inside a subgraph) when it has none."""
    found = []
    for i, node in enumerate(graph.node):
        label = node.name or (f"{parent}/#{i}" if parent else f"#{i}")
        found.append((node, label))
        for attribute in node.attribute:
            for body in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                found.extend(_onnx_nodes(body, label))
    return found


def _message(exc: BaseException) -> str:
    """An OpenVINO error without its C++ source locations and documentation links, on one line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if not line.startswith(("Exception from", "Check '", "To facilitate"))]
    text = " ".join(kept or lines) or type(exc).__name__
    return text if len(text) <= 400 else text[:400] + "..."
