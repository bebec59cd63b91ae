"""One emitter per hls4ml layer class (or small family): a pure function from a `LayerPlan` to C++.

Each module registers the hls4ml class names it emulates in `EMITTERS`; a layer class not listed
is refused by name before any code is generated.
"""

from __future__ import annotations

from typing import Callable

from yukti.runners.fixed.ops import activation, batchnorm, conv, dense, layout, merge, pool, softmax
from yukti.runners.fixed.plan import Emitted, LayerPlan

EMITTERS: dict[str, Callable[[LayerPlan], Emitted]] = {
    **dense.EMITTERS, **conv.EMITTERS, **activation.EMITTERS, **softmax.EMITTERS, **pool.EMITTERS,
    **batchnorm.EMITTERS, **layout.EMITTERS, **merge.EMITTERS,
}


def supported_classes() -> list[str]:
    return sorted(EMITTERS)
