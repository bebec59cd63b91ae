"""The Keras source: the model's original Keras model through hls4ml's Keras converter."""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from yukti.runners.hls4ml.frontend import Frontend
from yukti.model import Model

# Layers that carry no computation of their own in a Keras model.
_TRANSPARENT = {"InputLayer", "Dropout", "Functional", "Sequential"}
# Keras' own attention layers: no handler in hls4ml's Keras v3 registry or its v2 fallback
# (hls4ml.converters.parse_keras_v3_model: "Layer <class '...MultiHeadAttention'> not found in
# registry, and no fallback option succeeded").
_ATTENTION_LAYERS = {"MultiHeadAttention", "GroupedQueryAttention", "Attention", "AdditiveAttention"}


@functools.lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    import hls4ml.converters

    return frozenset(hls4ml.converters.get_supported_keras_layers()) | _TRANSPARENT


class KerasFrontend(Frontend):
    source = "keras"

    def unsupported_layers(self, model: Model) -> tuple[tuple[str, str], ...]:
        known = _known()
        return tuple((type(layer).__name__, layer.name) for layer in model.keras_model.layers
                     if type(layer).__name__ not in known)

    def attention(self, model: Model) -> tuple[tuple[str, str], ...]:
        return tuple((type(layer).__name__, layer.name) for layer in model.keras_model.layers
                     if type(layer).__name__ in _ATTENTION_LAYERS and type(layer).__module__.startswith("keras"))

    def attention_detail(self) -> str:
        return ("its Keras frontend has no handler for Keras' own MultiHeadAttention, GroupedQueryAttention, "
                "Attention or AdditiveAttention (neither in its Keras v3 registry nor its v2 fallback)")

    def kernel_sizes(self, model: Model) -> list[tuple[str, str, int]]:
        sizes = []
        for layer in model.keras_model.layers:
            kernel = getattr(layer, "kernel", None)
            if kernel is not None:
                sizes.append((type(layer).__name__, layer.name, int(np.prod(tuple(kernel.shape)))))
        return sizes

    def config(self, model: Model, **common: Any) -> dict[str, Any]:
        import hls4ml

        return hls4ml.utils.config_from_keras_model(model.keras_model, **common)

    def convert(self, model: Model, config: dict[str, Any], **kwargs: Any) -> Any:
        import hls4ml

        return hls4ml.converters.convert_from_keras_model(model.keras_model, hls_config=config, **kwargs)

    def float_activations(self, model: Model, hls_model: Any, x: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output, as hls4ml names them: a layer with a fused activation becomes two
        hls4ml layers, `name` (before the activation) and `name_<activation>` (after it). hls4ml's
        own get_ymodel_keras does the same but needs matplotlib and seaborn (its profiling module),
        and switches each activation off in the user's model while it runs."""
        import keras

        layer_names = {layer.name for layer in hls_model.get_layers()}
        layers = [layer for layer in model.keras_model.layers if not isinstance(layer, (keras.layers.InputLayer, keras.layers.Dropout))]
        fused = [layer for layer in layers if _fused_activation(layer)]
        probe = keras.Model(model.keras_model.inputs, [layer.output for layer in layers] + [layer.input for layer in fused])
        values = probe(x, training=False)
        values = [np.asarray(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
        found = {}
        for layer, value in zip(layers, values):
            found[f"{layer.name}_{layer.activation.__name__}" if _fused_activation(layer) else layer.name] = value
        for layer, layer_input in zip(fused, values[len(layers):]):
            found[layer.name] = _without_activation(layer, layer_input)
        return {name: value for name, value in found.items() if name in layer_names}


def _fused_activation(layer: Any) -> bool:
    """A computing layer (Dense, Conv...) with a non-linear activation of its own."""
    import keras

    activation = getattr(layer, "activation", None)
    return activation is not None and not isinstance(layer, keras.layers.Activation) and activation.__name__ != "linear"


def _without_activation(layer: Any, layer_input: np.ndarray) -> np.ndarray:
    """The layer's output before its activation, from a linear copy (the model is never changed)."""
    linear = type(layer).from_config({**layer.get_config(), "activation": "linear"})
    linear.build(layer_input.shape)
    linear.set_weights(layer.get_weights())
    return np.asarray(linear(layer_input))


FRONTEND = KerasFrontend()
