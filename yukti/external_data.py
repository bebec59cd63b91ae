"""ONNX external data (weights in side files), read safely and inlined.

A model file is untrusted, and so are the locations it names: data is read only from the model
file's own folder (no absolute paths, `..` or symlinks out of it), checked against the tensor's
size before anything is read, and inlined so that the weights are part of the canonical bytes and
of the model hash (two models sharing a graph file but not a `.data` file never share an artifact).
"""

from __future__ import annotations

import os
import math
from typing import Sequence

import numpy as np
import onnx

from yukti.errors import ModelLoadError


def external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    """Every tensor of the model whose data lives in an external file: initializers (sparse ones
    too) and attribute tensors, in the main graph, its subgraphs and the model's functions."""
    found: list[onnx.TensorProto] = []

    def from_nodes(nodes: Sequence[onnx.NodeProto]) -> None:
        for node in nodes:
            for attribute in node.attribute:
                tensors = [attribute.t, *attribute.tensors]
                for sparse in [attribute.sparse_tensor, *attribute.sparse_tensors]:
                    tensors += [sparse.values, sparse.indices]
                found.extend(t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)
                for graph in [attribute.g, *attribute.graphs]:
                    from_graph(graph)

    def from_graph(graph: onnx.GraphProto) -> None:
        tensors = [*graph.initializer, *(t for s in graph.sparse_initializer for t in (s.values, s.indices))]
        found.extend(t for t in tensors if t.data_location == onnx.TensorProto.EXTERNAL)
        from_nodes(graph.node)

    from_graph(proto.graph)
    for function in proto.functions:
        from_nodes(function.node)
    return found


def inline_external_data(proto: onnx.ModelProto, tensors: list[onnx.TensorProto], base_dir: str | os.PathLike | None,
                          what: str, model_bytes: int) -> None:
    """Read each external tensor's data from `base_dir` into the tensor (checked before reading:
    the location stays inside the folder, the range inside the file, the whole model under 2 GB)."""
    from onnx.external_data_helper import ExternalDataInfo

    first = tensors[0]
    location = next((entry.value for entry in first.external_data if entry.key == "location"), "")
    if base_dir is None:
        raise ModelLoadError(
            f"{what} keeps tensor {first.name!r}{f' (and {len(tensors) - 1} more)' if len(tensors) > 1 else ''} in external "
            f"data ({location!r}) and there is "
            "no folder to read it from: load the model from its file, yukti.load('path/model.onnx'), so that the data "
            "is read from beside it, or pass onnx.load('path/model.onnx') (which reads the data in)")
    folder = os.path.realpath(base_dir)
    total = model_bytes
    reads = []  # (tensor, location, resolved file, offset, length), all checked before any is read
    for tensor in tensors:
        try:
            info = ExternalDataInfo(tensor)
        except ValueError as exc:  # a negative offset or length
            raise ModelLoadError(f"{what}: tensor {tensor.name!r} has unusable external data fields: {exc}") from None
        where = f"{what}: tensor {tensor.name!r} stores its data at {info.location!r}"
        parts = info.location.replace("\\", "/").split("/")
        if not info.location or os.path.isabs(info.location) or parts[0] == "" or ".." in parts or ":" in parts[0]:
            raise ModelLoadError(f"{where}; an external data location must be a relative path inside the model's folder "
                                 f"{str(base_dir)!r} (no absolute path, no '..')")
        try:
            target = os.path.realpath(os.path.join(folder, info.location))
            inside = os.path.commonpath([folder, target]) == folder
            size = os.path.getsize(target) if inside and os.path.isfile(target) else None
        except (OSError, ValueError) as exc:  # a NUL in the name, a path too long
            raise ModelLoadError(f"{where}, which cannot be opened: {exc}") from None
        if not inside:
            raise ModelLoadError(f"{where}, which resolves to {target}, outside the model's folder {folder} (a symlink?); refused")
        if size is None:
            raise ModelLoadError(f"{where}: no such file in the model's folder {folder}")
        offset = info.offset or 0
        length = info.length if info.length is not None else max(size - offset, 0)
        if offset + length > size:
            raise ModelLoadError(f"{where}: bytes {offset}..{offset + length} lie past the end of the {size}-byte file (truncated?)")
        expected = _raw_bytes(tensor)
        if expected is not None and length != expected:
            raise ModelLoadError(f"{where}: {length} bytes, where its shape {list(tensor.dims)} needs {expected}")
        total += length
        reads.append((tensor, info.location, target, offset, length))
        if total >= onnx.checker.MAXIMUM_PROTOBUF:
            raise ModelLoadError(
                f"{what} with its external data holds more than {onnx.checker.MAXIMUM_PROTOBUF} bytes, protobuf's limit for one "
                "ONNX message; Yukti hashes and hands models around as one message, so it cannot take a model this large")
    for tensor, location, target, offset, length in reads:
        # Read here rather than by onnx.external_data_helper, which refuses every symlink, even one
        # inside the folder; the resolved path was checked above.
        try:
            with open(target, "rb") as handle:
                handle.seek(offset)
                data = handle.read(length)
        except OSError as exc:
            raise ModelLoadError(f"{what}: could not read external data of tensor {tensor.name!r} from {location!r}: {exc}") from None
        if len(data) != length:  # the file shrank since it was measured
            raise ModelLoadError(f"{what}: external data of tensor {tensor.name!r} at {location!r} ended after {len(data)} of {length} bytes")
        tensor.raw_data = data
        tensor.data_location = onnx.TensorProto.DEFAULT
        del tensor.external_data[:]


def _raw_bytes(tensor: onnx.TensorProto) -> int | None:
    """Bytes of the tensor's raw data by its shape and type; None for types this does not size
    (strings, ml_dtypes' 4-bit types that pack two values per byte): the checker judges those."""
    try:
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        return None
    if dtype.kind not in "biufc" or dtype.type.__module__ != "numpy":
        return None
    return math.prod(tensor.dims) * dtype.itemsize
