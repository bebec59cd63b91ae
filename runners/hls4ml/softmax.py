"""`tune_softmax`: keeps hls4ml's stable softmax from wrapping on confident outputs.

hls4ml's stable softmax holds x_max - x in a wrapping type of range [0, 32) for ap_fixed<16,6> (a
logit spread over 32 turns a confident answer into nonsense: max abs 0.54 on jet_dnn), and
indexes its 1024-entry 1/sum table over [-128, 128) (steps of 0.25 for a sum in [1, n]).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from yukti.errors import YuktiError


def tune_softmax(hls_model: Any) -> None:
    """hls4ml's stable softmax stores x_max - x_i in `inp_norm_t`, by default the input type made
    unsigned (ap_ufixed<15,5> for ap_fixed<16,6>: range [0, 32)) with WRAP overflow: a class 40
    below the winner wraps to 8 below it and gets a large probability. A saturating type of the
    same width sends it to exp(-32) ~ 0 instead. The sum of exponentials (in [1, n]) addresses the
    1/sum table through the top 10 bits of `inv_inp_t`; hls4ml's default ap_fixed<18,8> spends
    them on [-128, 128), so we give it just the integer bits the sum needs."""
    for layer in hls_model.get_layers():
        if layer.class_name != "Softmax" or layer.get_attr("implementation", "stable") != "stable":
            continue
        if layer.get_attr("inp_norm_t") is not None:
            continue  # set by the user or the frontend (HGQ): leave it
        source = layer.get_input_variable().type.precision
        if not hasattr(source, "saturation_mode"):
            continue  # not fixed point
        # copies of the backend's own type objects, which know how to write themselves as C++
        precision = copy.copy(source)
        precision.width, precision.integer = source.width - int(source.signed), source.integer - int(source.signed)
        precision.signed = False
        precision.saturation_mode = "SAT"
        named = copy.copy(layer.get_attr("exp_table_t"))
        named.name = f"{layer.name}_inp_norm_t"
        named.precision = precision
        layer.set_attr("inp_norm_t", named)
        # the exp table is addressed by the top log2(size) bits of that type: no more entries than
        # its patterns (hls4ml caps its own default type the same way; a narrower type would slice
        # bits below bit 0)
        size = int(layer.get_attr("exp_table_size", layer.get_attr("table_size", 1024)))
        layer.set_attr("exp_table_size", min(size, 2 ** precision.width))
        inv = layer.get_attr("inv_inp_t")
        if inv is not None and hasattr(inv.precision, "saturation_mode"):
            n_slice = int(np.prod(layer.get_input_variable().shape[-1:]))
            narrowed = copy.copy(inv.precision)
            narrowed.integer = int(np.ceil(np.log2(max(n_slice, 2)))) + 2  # sign + room for the sum
            inv.precision = narrowed
        # the layer's C++ config struct was rendered at conversion; render it again with the new type
        from hls4ml.backends.vivado.passes.core_templates import SoftmaxConfigTemplate

        SoftmaxConfigTemplate().transform(hls_model, layer)
        if named.name not in layer.get_attr("config_cpp", ""):
            raise YuktiError(f"tune_softmax: hls4ml {hls_model.config.backend.name} did not take the saturating "
                             f"type for softmax layer {layer.name!r}; pass tune_softmax=False")
