"""hls4ml's converted ModelGraph -> a plan of layers the emitters turn into integer C++.

Why hls4ml's graph and not our ONNX IR: bit identity is with what hls4ml *builds*, and that is
decided by its converters and optimizer passes: inserted transposes (channels-last), merged or
split activations, 'auto' types inferred per layer, table sizes and the softmax implementation,
and the weights as it prints them (decimal text, quantized by the C++ compiler). Reading the graph
it converted, with the same configuration dict as the `hls4ml` backend, takes all of that as it is.

Nothing from the model reaches the C++ but numbers: tensors and kernels are named by position
(t3, L3); layer names stay in Python (the overflow report). Weight literals are checked to be
plain decimal numbers before they are written.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from yukti.errors import UnsupportedModelError
from yukti.fixed_point import FixedType, PrecisionError

_NUMBER = re.compile(r"^-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")


@dataclass(frozen=True)
class Tensor:
    cname: str  # t<index of the layer that writes it>
    type: FixedType
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass(frozen=True)
class Weight:
    literals: tuple[str, ...]  # as hls4ml writes them into its weight headers
    type: FixedType
    shape: tuple[int, ...]


@dataclass
class LayerPlan:
    index: int
    name: str  # hls4ml's layer name: reports only, never code
    kind: str  # hls4ml class name
    inputs: list[Tensor]
    output: Tensor
    types: dict[str, FixedType] = field(default_factory=dict)
    weights: dict[str, Weight] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def fn(self) -> str:
        return f"L{self.index}"

    def attr(self, key: str) -> Any:
        if key not in self.attrs:
            raise UnsupportedModelError(f"layer {self.name!r} ({self.kind}): hls4ml gave no {key!r}")
        return self.attrs[key]

    def int_attr(self, key: str) -> int:
        value = self.attr(key)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise UnsupportedModelError(f"layer {self.name!r} ({self.kind}): {key} = {value!r} is not an integer")
        return int(value)

    def refuse(self, why: str) -> UnsupportedModelError:
        return UnsupportedModelError(f"the fixed backend cannot emulate layer {self.name!r} ({self.kind}): {why}")


@dataclass
class Emitted:
    decls: str  # weights, tables and the kernel `template <bool COUNT> void L<i>(in..., out, uint64_t *ovf)`
    call: str  # the statement that runs the layer on one sample
    init: str = ""  # run once before the first sample (tables, weight quantization)
    counters: tuple[str, ...] = ("result",)  # overflow counters, in the order ovf[0], ovf[1], ...


@dataclass
class Plan:
    layers: list[LayerPlan]
    inputs: list[Tensor]
    outputs: list[Tensor]
    input_shapes: list[list[int]]  # as hls4ml takes them (channels-last where it converted)
    output_shapes: list[list[int]]


# Attribute values copied from hls4ml layers: numbers, short strings, lists of numbers.
def _plain(value: Any) -> bool:
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
        return True
    if isinstance(value, str):
        return len(value) < 64
    if isinstance(value, (list, tuple)):
        return all(isinstance(v, (int, np.integer)) for v in value)
    return False


def plan_from_hls(hls_model: Any) -> Plan:
    """The plan of every layer of a converted (not written) hls4ml ModelGraph, in execution order."""
    tensors: dict[str, Tensor] = {}
    layers: list[LayerPlan] = []
    for index, layer in enumerate(hls_model.get_layers()):
        where = f"layer {layer.name!r} ({layer.class_name})"
        try:
            types = {key.removesuffix("_t"): FixedType.from_hls(named.precision, f"{where} {key}")
                     for key, named in layer.types.items() if key != "index_t"}
            # types set as attributes only (tune_softmax's inp_norm_t, hls4ml's softmax inv_inp_t)
            for key, value in layer.attributes.items():
                if key.endswith("_t") and key != "index_t" and key.removesuffix("_t") not in types and hasattr(value, "precision"):
                    types[key.removesuffix("_t")] = FixedType.from_hls(value.precision, f"{where} {key}")
            weights = {}
            for key, var in layer.weights.items():
                literals = tuple(var)
                bad = next((s for s in literals if not _NUMBER.match(s)), None)
                if bad is not None:
                    raise UnsupportedModelError(f"{where}: weight {key!r} holds {bad[:40]!r}, not a decimal number")
                weights[key] = Weight(literals, FixedType.from_hls(var.type.precision, f"{where} weight {key!r}"),
                                      tuple(int(d) for d in np.shape(var.data)))
        except PrecisionError as exc:
            raise UnsupportedModelError(str(exc)) from None
        if "result" not in types:
            raise UnsupportedModelError(f"{where}: hls4ml gave it no result type")
        out_var = layer.get_output_variable()
        inputs = [tensors[name] for name in layer.inputs if name in tensors] if layer.class_name != "Input" else []
        if layer.class_name != "Input" and len(inputs) != len(layer.inputs):
            raise UnsupportedModelError(f"{where}: reads {list(layer.inputs)}, not all produced by earlier layers")
        # a Reshape is an alias of its input in hls4ml's io_parallel code: same values, same type
        result = inputs[0].type if layer.class_name == "Reshape" and inputs else types["result"]
        output = Tensor(f"t{index}", result, tuple(int(d) for d in out_var.shape))
        attrs = {key: (list(value) if isinstance(value, tuple) else value) for key, value in layer.attributes.items()
                 if _plain(value) and not key.endswith("_t") and key not in ("name", "inputs", "outputs", "trace")}
        # types hls4ml left at the model default: some config templates replace those (softmax's accum_t)
        attrs["default_types"] = sorted(key.removesuffix("_t") for key, value in layer.attributes.items()
                                        if key.endswith("_t") and getattr(value, "name", None) == "model_default_t")
        for name in layer.outputs:
            tensors[name] = output
        layers.append(LayerPlan(index, str(layer.name), layer.class_name, inputs, output, types, weights, attrs))
    input_names = [v.name for v in hls_model.get_input_variables()]
    output_names = list(hls_model.outputs)
    missing = [n for n in input_names + output_names if n not in tensors]
    if missing:
        raise UnsupportedModelError(f"hls4ml model tensors {missing} are not produced by any layer")
    return Plan(layers, [tensors[n] for n in input_names], [tensors[n] for n in output_names],
                [list(v.shape) for v in hls_model.get_input_variables()],
                [list(v.shape) for v in hls_model.get_output_variables()])
