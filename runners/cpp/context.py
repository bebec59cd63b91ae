"""What an operator emitter may ask about while C++ is generated: tensor pointers, shapes, constants.

Every emitter in runners/cpp/ops/ has the signature `emit(node: ir.Node, ctx: EmitContext) -> str`;
the code generator (codegen.py) makes one context per model and hands it to each emitter in turn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from yukti.runners.cpp import ir
from yukti.runners.cpp.isa import DEFAULT as DEFAULT_ISA, Isa
from yukti.safe_names import identifier


@dataclass
class EmitContext:
    """What an emitter may ask about: tensor pointers, shapes, constants and the target's vector ISA."""

    graph: ir.Graph
    pointers: dict[str, str]
    # the target's vector width and register count (runners/cpp/isa.py): kernels size their blocks by it
    # and use its vector type (isa.vector_type, isa.load) from the generated prelude
    isa: Isa = DEFAULT_ISA
    constants: dict[str, tuple[bytes, np.ndarray]] = field(default_factory=dict)  # C identifier -> (bytes, values)
    constant_floats: int = 0  # all constants together, to bound the generated source
    _by_bytes: dict[bytes, str] = field(default_factory=dict, repr=False)  # equal constants share one array

    def value(self, name: str) -> ir.Value:
        return self.graph.values[name]

    def ptr(self, name: str) -> str:
        """C expression of the tile pointer of a batched tensor (per-sample stride = its size)."""
        return self.pointers[name]

    def const_array(self, array: np.ndarray, hint: str) -> str:
        """Register a float constant for model.hpp and return its C identifier."""
        flat = np.ascontiguousarray(array, dtype=np.float32).reshape(-1)
        key = flat.tobytes()
        if key in self._by_bytes:
            return self._by_bytes[key]
        ident = f"w{len(self.constants)}_{identifier(hint)[:40]}"
        self.constants[ident] = (key, flat)
        self._by_bytes[key] = ident
        self.constant_floats += len(flat)
        return ident

    def const_value(self, name: str) -> np.ndarray:
        value = self.graph.values.get(name)
        if value is None or value.const is None:
            raise KeyError(name)
        return value.const
