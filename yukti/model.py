"""The model handle: one trained network, whatever framework it came from.

A `Model` carries the canonical ONNX bytes (the common currency of every backend), a content
hash used as the cache key, the input/output specs with a free batch dimension, and the original
framework object (torch module, Keras model) for backends that would rather start from it.

About 400 lines: the Model and the three loaders that make one (ONNX, torch export, Keras), which
share the checks a loaded model must pass; input conversion lives in yukti/inputs.py and external
data in yukti/external_data.py.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import onnx

from yukti import limits
from yukti.errors import InputError, ModelLoadError, UnsupportedModelError
from yukti.external_data import external_tensors, inline_external_data
# The conversions validate_inputs applies (names kept importable from here for existing callers).
from yukti.inputs import (_all_finite, _is_nested_numbers, _non_finite_error, _to_dtype,  # noqa: F401
                          _to_numpy)

if TYPE_CHECKING:  # pragma: no cover
    from yukti.datasets import Dataset

DEFAULT_OPSET = 18


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape and dtype of one model input or output; `shape[0]` is the batch dimension.

    A `None` dimension is dynamic. The batch dimension is normally dynamic; a model exported with a
    fixed batch size keeps that number and only accepts it.
    """

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        return self.shape[1:]

    def describe(self) -> str:
        dims = ["batch" if d is None and i == 0 else ("?" if d is None else str(d)) for i, d in enumerate(self.shape)]
        return f"{self.name}: {np.dtype(self.dtype).name}[{', '.join(dims)}]"


def _specs_from_value_infos(values: Sequence[onnx.ValueInfoProto], skip: set[str] = frozenset()) -> tuple[TensorSpec, ...]:
    specs = []
    for value in values:
        if value.name in skip:
            continue
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type"):
            raise ModelLoadError(f"graph value {value.name!r} is not a tensor; Yukti handles tensor inputs and outputs only")
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim)
        dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        specs.append(TensorSpec(value.name, dims, dtype))
    return tuple(specs)


@dataclass(eq=False)
class Model:
    """A trained network ready to hand to any runner. Build one with `yukti.load`."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    source: str  # "onnx", "torch" or "keras"
    torch_module: Any = None
    keras_model: Any = None
    data: "Dataset | None" = None  # evaluation data matched to the model's preprocessing (zoo models)
    meta: dict[str, Any] = field(default_factory=dict)
    # "classification" | "regression" | "anomaly" (yukti.vocabulary.TASKS); None: inferred by yukti.metrics.infer_task
    task: str | None = None
    # The features of the flattened input an autoencoder's output reconstructs, [start, stop); None: all
    # of them. An anomaly model may read more than it reconstructs (e.g. a pile-up count that only
    # conditions the encoding); its score compares the output with this slice of the input.
    reconstructs: tuple[int, int] | None = None
    _onnx_bytes: bytes | None = field(default=None, repr=False)
    _onnx_error: str | None = field(default=None, repr=False)
    _hash: str | None = field(default=None, repr=False)
    _proto: onnx.ModelProto | None = field(default=None, repr=False)

    # -- the ONNX form -------------------------------------------------------------------------
    @property
    def has_onnx(self) -> bool:
        return self._onnx_bytes is not None

    @property
    def onnx_bytes(self) -> bytes:
        if self._onnx_bytes is None:
            raise ModelLoadError(f"model {self.name!r} has no ONNX form: {self._onnx_error or 'conversion was not attempted'}")
        return self._onnx_bytes

    @property
    def onnx(self) -> onnx.ModelProto:
        """The parsed ONNX graph (a private copy per Model; do not mutate it)."""
        if self._proto is None:
            self._proto = onnx.load_from_string(self.onnx_bytes)
        return self._proto

    @property
    def hash(self) -> str:
        """Content hash (sha256 hex) of the canonical ONNX bytes: the artifact-cache key."""
        if self._hash is None:
            self._hash = hashlib.sha256(self.onnx_bytes).hexdigest()
        return self._hash

    @property
    def op_types(self) -> list[str]:
        return sorted({node.op_type for node in self.onnx.graph.node}) if self.has_onnx else []

    def save(self, path: str | os.PathLike) -> Path:
        """Write the ONNX form to `path` atomically."""
        from yukti.cache import atomic_write_bytes

        return atomic_write_bytes(Path(path), self.onnx_bytes)

    def __repr__(self) -> str:
        ins = ", ".join(s.describe() for s in self.inputs)
        outs = ", ".join(s.describe() for s in self.outputs)
        digest = self._hash[:12] if self._hash else ("?" if self._onnx_bytes is None else self.hash[:12])
        return f"Model({self.name!r}, source={self.source}, inputs=[{ins}], outputs=[{outs}], hash={digest})"

    # -- inputs --------------------------------------------------------------------------------
    def validate_inputs(self, inputs: Any, *, check_finite: bool = True) -> list[np.ndarray]:
        """Return one C-contiguous array per model input, in the model's input order.

        Accepts an array (single-input models), a sequence of arrays in input order, or a dict
        keyed by input name; torch tensors are accepted in place of arrays. Converts only where
        no value changes (dtype widening, exact narrowing, non-contiguous, Fortran-ordered,
        negative-stride or big-endian memory, bfloat16/float8 from ml_dtypes or torch widened to
        float32); anything else raises `InputError` naming the expected shape and dtype.

        A nested list of numbers is one array, read as `np.asarray(value)` reads it
        (`[[0.1] * 16]` is a (1, 16) input); its Python floats are rounded to a narrower float
        input dtype as `np.float32(0.1)` rounds them. A list holding arrays or tensors is a
        sequence of inputs. Masked arrays are refused (the mask has no meaning to a network):
        fill them explicitly with `x.filled(value)`.
        """
        specs = self.inputs
        # Fast path (the batch-1 hot loop): one well-formed float array needs three cheap checks.
        if type(inputs) is np.ndarray and len(specs) == 1:
            spec = specs[0]
            if (inputs.dtype == spec.dtype and inputs.flags.c_contiguous and inputs.ndim == len(spec.shape)
                    and inputs.shape[0] > 0 and inputs.shape[1:] == spec.shape[1:]
                    and (spec.shape[0] is None or spec.shape[0] == inputs.shape[0])
                    and (not check_finite or spec.dtype.kind != "f" or _all_finite(inputs))):
                return [inputs]
        if isinstance(inputs, Mapping):
            names = [s.name for s in specs]
            missing = [n for n in names if n not in inputs]
            extra = [k for k in inputs if k not in names]
            if missing or extra:
                raise InputError(
                    f"model {self.name!r} expects inputs {names}; missing {missing}, unexpected {extra}"
                )
            arrays = [inputs[n] for n in names]
        elif isinstance(inputs, (list, tuple)) and not (len(specs) == 1 and _is_nested_numbers(inputs)):
            if len(inputs) != len(specs):
                raise InputError(
                    f"model {self.name!r} expects {len(specs)} input(s) "
                    f"({', '.join(s.describe() for s in specs)}); got {len(inputs)}"
                )
            arrays = list(inputs)
        else:
            if len(specs) != 1:
                raise InputError(
                    f"model {self.name!r} has {len(specs)} inputs ({', '.join(s.describe() for s in specs)}); "
                    "pass a sequence in that order or a dict keyed by input name"
                )
            arrays = [inputs]

        checked = []
        batch = None
        for spec, value in zip(specs, arrays):
            array = _to_numpy(value, spec)
            if array.ndim != len(spec.shape):
                hint = " (a single sample needs a leading batch dimension: x[None])" if array.ndim == len(spec.shape) - 1 else ""
                if array.ndim == len(spec.shape) + 1 and isinstance(value, (list, tuple)):
                    hint = " (a nested list is read as one array, as np.asarray reads it: drop the outer list)"
                raise InputError(f"input {spec.describe()} expects {len(spec.shape)} dimensions; got shape {array.shape}{hint}")
            if array.shape[0] == 0:
                raise InputError(f"input {spec.describe()} got an empty batch (shape {array.shape}); batch size must be >= 1")
            for axis, (want, got) in enumerate(zip(spec.shape, array.shape)):
                if want is not None and want != got:
                    raise InputError(f"input {spec.describe()} expects size {want} on axis {axis}; got shape {array.shape}")
            if batch is None:
                batch = array.shape[0]
            elif array.shape[0] != batch:
                raise InputError(f"all inputs must share the batch size; {spec.name!r} has {array.shape[0]}, earlier inputs {batch}")
            array = _to_dtype(array, spec)
            if not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            if check_finite and array.dtype.kind == "f" and not _all_finite(array):
                raise _non_finite_error(spec, array)
            checked.append(array)
        return checked

    def example_inputs(self, batch_size: int = 1, seed: int = 0) -> list[np.ndarray]:
        """Random inputs of the right shape and dtype (dynamic non-batch dimensions must be fixed)."""
        rng = np.random.default_rng(seed)
        arrays = []
        for spec in self.inputs:
            if any(d is None for d in spec.sample_shape):
                raise InputError(f"input {spec.describe()} has a dynamic non-batch dimension; give real inputs")
            shape = (batch_size, *spec.sample_shape)
            if spec.dtype.kind == "f":
                arrays.append(rng.standard_normal(shape).astype(spec.dtype))
            elif spec.dtype.kind in "iu":
                arrays.append(rng.integers(0, 10, shape).astype(spec.dtype))
            else:
                arrays.append(np.zeros(shape, spec.dtype))
        return arrays


# -- loading ---------------------------------------------------------------------------------------


def load(
    source: Any,
    example_input: Any = None,
    *,
    name: str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
    task: str | None = None,
    reconstructs: tuple[int, int] | None = None,
) -> Model:
    """Load a trained network: an ONNX path/bytes/ModelProto, a torch.nn.Module plus an example
    input, or a Keras model. `task` ("classification", "regression" or "anomaly") says which
    fidelity and physics metrics apply; without it Yukti infers it (yukti.metrics.infer_task).
    `reconstructs=(start, stop)`: an autoencoder whose output reconstructs only those features of its
    flattened input (task "anomaly"; the score compares the output with that slice)."""
    if task is not None or reconstructs is not None:
        from yukti.vocabulary import ANOMALY, TASKS

        if task is not None and task not in TASKS:
            raise InputError(f"task must be one of {sorted(TASKS)}; got {task!r}")
        if reconstructs is not None:
            if task not in (None, ANOMALY):
                raise InputError(f"reconstructs= describes an autoencoder (task 'anomaly'); got task {task!r}")
            span = tuple(reconstructs) if isinstance(reconstructs, (tuple, list)) else ()
            if len(span) != 2 or not all(isinstance(v, int) for v in span) or not 0 <= span[0] < span[1]:
                raise InputError(f"reconstructs= must be (start, stop) with 0 <= start < stop; got {reconstructs!r}")
        model = load(source, example_input, name=name, input_names=input_names, output_names=output_names, opset=opset)
        model.task = ANOMALY if reconstructs is not None else task
        if reconstructs is not None:
            width = math.prod(d or 0 for d in model.inputs[0].sample_shape)
            out_width = math.prod(d or 0 for d in model.outputs[0].sample_shape)
            if span[1] > width or span[1] - span[0] != out_width:
                raise InputError(f"reconstructs={span}: the output has {out_width} features per sample and the input "
                                 f"{width}; the span must lie in the input and match the output")
            model.reconstructs = span
        return model
    if isinstance(source, Model):
        return source
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ModelLoadError(f"no ONNX file at {str(path)!r} (expected a path to a .onnx file)")
        # external data (weights in side files) is read from the model file's folder, not the cwd
        return from_onnx(path.read_bytes(), name=name or path.stem, origin=str(path), base_dir=path.parent)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return from_onnx(bytes(source), name=name or "model")
    if isinstance(source, onnx.ModelProto):
        return from_onnx(source.SerializeToString(), name=name or source.graph.name or "model")
    if _is_torch_module(source):
        if example_input is None:
            raise ModelLoadError("a torch.nn.Module needs an example input: yukti.load(module, example_input)")
        return from_torch(source, example_input, name=name, input_names=input_names, output_names=output_names, opset=opset)
    if _is_keras_model(source):
        return from_keras(source, name=name)
    raise ModelLoadError(
        f"cannot load a {type(source).__module__}.{type(source).__name__}; expected an ONNX path, bytes or "
        "onnx.ModelProto, a torch.nn.Module with an example input, or a Keras model"
    )


def from_onnx(data: bytes, *, name: str = "model", origin: str = "bytes", base_dir: str | os.PathLike | None = None,
              **extra: Any) -> Model:
    """A Model from serialized ONNX. Tensors kept in external data files are read from `base_dir`
    (the model file's folder; locations may not leave it) and inlined, so the weights are part of
    the canonical bytes and of the model hash; without `base_dir` such a model is refused."""
    what = origin if origin != "bytes" else "the given bytes"
    try:
        proto = onnx.load_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends
        raise ModelLoadError(f"{what} is not a valid ONNX model (expected a serialized onnx.ModelProto): {exc}") from None
    if not proto.graph.node or not proto.graph.output:
        raise ModelLoadError(f"{what} is not a usable ONNX model (expected a graph with nodes and outputs; the file may be truncated or not ONNX)")
    external = external_tensors(proto)
    if external:
        inline_external_data(proto, external, base_dir, what, len(data))
    try:
        onnx.checker.check_model(proto)
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    except Exception as exc:
        raise ModelLoadError(f"{what} failed ONNX validation (truncated or malformed?): {exc}") from None
    try:  # before any backend folds or converts anything: a tiny file may describe gigabytes
        limits.check_bounds(inferred, what=what)
    except UnsupportedModelError as exc:
        raise ModelLoadError(str(exc)) from None
    initializers = {init.name for init in proto.graph.initializer}
    inputs = _specs_from_value_infos(proto.graph.input, skip=initializers)
    outputs = _specs_from_value_infos(proto.graph.output)
    for spec in inputs + outputs:
        if not spec.shape:
            raise ModelLoadError(f"{what}: tensor {spec.name!r} has no shape; Yukti needs a batch dimension on every input and output")
    canonical = proto.SerializeToString(deterministic=True)
    return Model(name=name, inputs=inputs, outputs=outputs, source="onnx", _onnx_bytes=canonical, meta={"origin": origin}, **extra)


def _is_torch_module(obj: Any) -> bool:
    return any(f"{c.__module__}.{c.__qualname__}" == "torch.nn.modules.module.Module" for c in type(obj).__mro__)


def _is_keras_model(obj: Any) -> bool:
    return any(c.__module__.startswith(("keras", "tf_keras", "tensorflow")) and c.__name__ in {"Model", "Layer"} for c in type(obj).__mro__)


def from_torch(
    module: Any,
    example_input: Any,
    *,
    name: str | None = None,
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Model:
    """Export a torch module to ONNX (dynamic batch dimension) and keep the module."""
    import torch

    if opset < 17:
        raise ModelLoadError(f"opset {opset} is too old; Yukti exports ONNX opset >= 17")
    examples = example_input if isinstance(example_input, (tuple, list)) else (example_input,)
    examples = tuple(torch.as_tensor(np.asarray(e)) if not isinstance(e, torch.Tensor) else e for e in examples)
    module = module.eval()
    in_names = list(input_names) if input_names else (["input"] if len(examples) == 1 else [f"input_{i}" for i in range(len(examples))])
    with torch.no_grad():
        reference = module(*examples)
    n_out = len(reference) if isinstance(reference, (tuple, list)) else 1
    out_names = list(output_names) if output_names else (["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)])
    data = _export_torch(module, examples, in_names, out_names, opset)
    model = from_onnx(data, name=name or type(module).__name__, origin="torch.onnx.export")
    model.source = "torch"
    model.torch_module = module
    return model


def _export_torch(module: Any, examples: tuple, in_names: list[str], out_names: list[str], opset: int) -> bytes:
    import torch

    errors = []
    # The TorchScript exporter is fast (0.2 s against 5 s) and exact for the layer types these
    # models use; the torch.export-based exporter is the fallback (and the future: the TorchScript
    # one is deprecated since torch 2.9).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            buffer = io.BytesIO()
            torch.onnx.export(
                module, examples, buffer, opset_version=opset, input_names=in_names, output_names=out_names,
                dynamic_axes={n: {0: "batch"} for n in in_names + out_names}, dynamo=False,
            )
            return buffer.getvalue()
        except Exception as exc:
            errors.append(f"TorchScript exporter: {exc}")
        try:
            batch = torch.export.Dim("batch", min=1, max=1 << 20)
            program = torch.onnx.export(
                module, examples, None, opset_version=opset, input_names=in_names, output_names=out_names,
                dynamic_shapes=tuple({0: batch} for _ in examples), dynamo=True, verbose=False,
            )
            return program.model_proto.SerializeToString()
        except Exception as exc:
            errors.append(f"torch.export exporter: {exc}")
    raise ModelLoadError("could not export the torch module to ONNX:\n  " + "\n  ".join(errors))


def from_keras(keras_model: Any, *, name: str | None = None) -> Model:
    """Keep a Keras model; convert it to ONNX (via tf2onnx) when a converter works here."""
    model_name = name or getattr(keras_model, "name", None) or "keras_model"
    try:
        data = _export_keras(keras_model)
    except Exception as exc:
        specs_in = tuple(
            TensorSpec(getattr(t, "name", f"input_{i}"), (None, *tuple(t.shape)[1:]), np.dtype(_keras_dtype(t)))
            for i, t in enumerate(keras_model.inputs)
        )
        specs_out = tuple(
            TensorSpec(getattr(t, "name", f"output_{i}"), (None, *tuple(t.shape)[1:]), np.dtype(_keras_dtype(t)))
            for i, t in enumerate(keras_model.outputs)
        )
        digest = hashlib.sha256(keras_model.to_json().encode())
        for weight in keras_model.get_weights():
            digest.update(np.ascontiguousarray(weight).tobytes())
        return Model(
            name=model_name, inputs=specs_in, outputs=specs_out, source="keras", keras_model=keras_model,
            _onnx_error=f"Keras to ONNX conversion failed: {exc}", _hash=digest.hexdigest(),
        )
    model = from_onnx(data, name=model_name, origin="keras.Model.export(format='onnx')")
    model.source = "keras"
    model.keras_model = keras_model
    return model


def _keras_dtype(tensor: Any) -> str:
    dtype = getattr(tensor, "dtype", "float32")
    return getattr(dtype, "name", str(dtype))


def _export_keras(keras_model: Any) -> bytes:
    # Keras 3 exports only a model that has been called ("The model provided has never called"): a
    # freshly built functional model has not. One call on zeros of the declared shapes changes no weight.
    if getattr(keras_model, "_called", True) is False:
        zeros = [np.zeros((1, *tuple(t.shape)[1:]), np.dtype(_keras_dtype(t))) for t in keras_model.inputs]
        keras_model(zeros if len(zeros) > 1 else zeros[0], training=False)
    with tempfile.TemporaryDirectory(prefix="yukti-keras-") as tmp:
        path = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            keras_model.export(str(path), format="onnx", verbose=False)
        return stable_tf2onnx(onnx.load_from_string(path.read_bytes())).SerializeToString(deterministic=True)


def stable_tf2onnx(proto: onnx.ModelProto) -> onnx.ModelProto:
    """tf2onnx names symbolic dimensions `unk__<n>` and writes the traced function's name into the
    graph doc string, both from a per-process counter: the same weights exported after other
    TensorFlow work gave different bytes, hence a different model hash. Name them by position."""
    graph = proto.graph
    graph.doc_string = ""
    renamed: dict[str, str] = {}
    for value in (*graph.input, *graph.output, *graph.value_info):
        for axis, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField("dim_param") and dim.dim_param.startswith("unk__"):
                if dim.dim_param not in renamed:
                    renamed[dim.dim_param] = "batch" if axis == 0 else f"dim_{len(renamed)}"
                dim.dim_param = renamed[dim.dim_param]
    return proto
