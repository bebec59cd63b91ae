"""What the runner's options may hold, and hls4ml's configuration dict built from them.

The runner declares its options (yukti.options.Option) with the choices and checks here, so the
base class refuses a typo in milliseconds, naming what is allowed, instead of hls4ml failing deep
inside a conversion (or, for some values, converting into nonsense).
"""

from __future__ import annotations

import re
from typing import Any

from yukti.fixed_point import OVERFLOW_MODES, ROUNDING_MODES
from yukti.runners.hls4ml.frontend import Frontend
from yukti.model import Model

PRECISION = re.compile(r"^(ap_)?(u?fixed|u?int)<[^<>]+>$")
STRATEGIES = ("Latency", "Resource")
IO_TYPES = ("io_parallel", "io_stream")
GRANULARITIES = ("model", "type", "name")
HLS_BACKENDS = ("Vivado", "Vitis")


def _is_precision(value: Any) -> bool:
    return isinstance(value, str) and bool(PRECISION.match(value.replace(" ", "")))


def precision(value: Any) -> str:
    """For `Option.check`: an ap_fixed/ap_int type as hls4ml writes it (spaces allowed), unchanged;
    its rounding and overflow modes, when given, must be ap_fixed's (hls4ml fails on others with a
    bare KeyError deep inside the conversion)."""
    if not _is_precision(value):
        raise ValueError("like 'ap_fixed<16,6>' or 'ap_int<8>'")
    fields = value.replace(" ", "").split("<", 1)[1].rstrip(">").split(",")
    modes = [(ROUNDING_MODES, "rounding"), (OVERFLOW_MODES, "overflow")]
    for field, (allowed, what) in zip(fields[2:4], modes):
        if field.upper().removeprefix("AP_") not in allowed:
            raise ValueError(f"{value!r}: {what} mode {field!r} is not one of {', '.join('AP_' + m for m in allowed)}")
    return value


def layer_precisions(value: Any) -> dict[str, Any]:
    """For `Option.check`: {hls4ml layer name: precision, or {"result"|"weight"|"bias"|"accum": precision}}."""
    if not isinstance(value, dict):
        raise ValueError(f"a dict {{layer name: precision}} (not a {type(value).__name__})")
    for layer, entry in value.items():
        values = entry.values() if isinstance(entry, dict) else [entry]
        if not all(_is_precision(v) for v in values):
            raise ValueError(f"a dict whose values are precisions like 'ap_fixed<16,6>' or dicts "
                             f"{{'result'|'weight'|'bias'|'accum': precision}} ({layer!r} has {entry!r})")
        for text in values:
            try:
                precision(text)
            except ValueError as exc:
                raise ValueError(f"layer {layer!r}: {exc}") from None
    return value


def conversion_options(*, precision_check: Any = None, layer_check: Any = None) -> dict[str, Any]:
    """The options that decide hls4ml's conversion (one owner: the `hls4ml` backend and the `fixed`
    backend, whose bit identity rests on converting with the same ones), in declaration order;
    `precision_check`/`layer_check` replace this module's checks (the fixed backend's are stricter)."""
    from yukti.options import Option
    from yukti.runners.hls4ml.frontend import SOURCES

    return {
        "precision": Option("ap_fixed<16,6>", check=precision_check or precision, doc="model-wide default type"),
        "layer_precision": Option(None, nullable=True, check=layer_check or layer_precisions,
                                  doc='{hls4ml layer name: "ap_fixed<..>" or {"result": .., "weight": .., "accum": ..}}'),
        "reuse_factor": Option(1, type=int, minimum=1, doc="multiplications sharing one multiplier"),
        "strategy": Option("Latency", choices=STRATEGIES),
        # "name"/"type" let hls4ml infer per-layer types ("auto"), which turned a softmax MLP into
        # one constant output here; kept for experiments.
        "granularity": Option("model", choices=GRANULARITIES, doc='"model": one precision for every layer'),
        "tune_softmax": Option(True, type=bool, doc="saturate hls4ml's softmax normalisation and fit its 1/sum "
                                                    "table to the sum's range (softmax.py); False keeps hls4ml's"),
        "source": Option("auto", choices=SOURCES, doc="auto: keras, else torch (its ONNX form when only that "
                                                       "converts: frontend.pick_source), else onnx"),
        "hls_backend": Option("Vivado", choices=HLS_BACKENDS, doc="the same C++ emulation; they differ for synthesis"),
    }


def hls_config(frontend: Frontend, model: Model, options: dict[str, Any]) -> dict[str, Any]:
    """hls4ml's configuration: the source's own defaults at the chosen precision, strategy and
    reuse factor, then the per-layer precision overrides."""
    config = frontend.config(model, granularity=options["granularity"], backend=options["hls_backend"],
                             default_precision=options["precision"], default_reuse_factor=options["reuse_factor"])
    config["Model"]["Strategy"] = options["strategy"]
    for layer, value in (options["layer_precision"] or {}).items():
        config.setdefault("LayerName", {}).setdefault(layer, {})["Precision"] = dict(value) if isinstance(value, dict) else value
    return config
