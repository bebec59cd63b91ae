"""Fixed-point types as hls4ml and Vivado/Vitis HLS write them: the one parser of precision strings.

`FixedType.parse("ap_fixed<16,6,AP_RND,AP_SAT>")` is what the `fixed` and `hls4ml` backends' options,
`yukti.scan` (yukti/precision.py) and the CLI read; a string that does not parse, or a type the emulation cannot hold,
is refused here with what is accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_MIN_INF", "RND_INF", "RND_CONV")
OVERFLOW_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
MAX_WIDTH = 64  # the emulation holds every value in a 64-bit integer

ACCEPTED = ("ap_fixed<W,I>, ap_ufixed<W,I>, ap_int<W> or ap_uint<W> (the ap_ prefix optional), optionally "
            f"ap_fixed<W,I,Q,O> with Q one of {', '.join('AP_' + m for m in ROUNDING_MODES)} and O one of "
            f"{', '.join('AP_' + m for m in OVERFLOW_MODES)}; 1 <= W <= {MAX_WIDTH}, I <= W")

_TYPE = re.compile(r"^(?:ap_|ac_)?(u?)(fixed|int)<([^<>]*)>$")


class PrecisionError(ValueError):
    """A precision that does not parse or that the emulation cannot represent."""


@dataclass(frozen=True)
class FixedType:
    """ap_(u)fixed<width, integer, rounding, overflow>; integers are fixed types with integer == width."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    overflow: str = "WRAP"

    def __post_init__(self) -> None:
        if not 1 <= self.width <= MAX_WIDTH:
            raise PrecisionError(f"{self}: width {self.width} is outside 1..{MAX_WIDTH}; accepted: {ACCEPTED}")
        if self.integer > self.width:
            raise PrecisionError(f"{self}: {self.integer} integer bits exceed the width {self.width} "
                                 f"(I > W); accepted: {ACCEPTED}")
        if self.rounding not in ROUNDING_MODES:
            raise PrecisionError(f"{self}: rounding mode {self.rounding!r} is not one of {ROUNDING_MODES}")
        if self.overflow not in OVERFLOW_MODES:
            raise PrecisionError(f"{self}: overflow mode {self.overflow!r} is not one of {OVERFLOW_MODES}")

    @property
    def fractional(self) -> int:
        return self.width - self.integer

    @property
    def lowest(self) -> float:
        return -(2.0 ** (self.integer - 1)) if self.signed else 0.0

    @property
    def highest(self) -> float:
        return 2.0 ** (self.integer - int(self.signed)) - 2.0 ** -self.fractional

    @property
    def step(self) -> float:
        return 2.0 ** -self.fractional

    def __str__(self) -> str:
        modes = "" if (self.rounding, self.overflow) == ("TRN", "WRAP") else f",AP_{self.rounding},AP_{self.overflow}"
        return f"ap_{'' if self.signed else 'u'}fixed<{self.width},{self.integer}{modes}>"

    @classmethod
    def parse(cls, text: Any) -> FixedType:
        """'ap_fixed<16,6>', 'fixed<16,6,AP_RND,AP_SAT>', 'ap_int<8>', 'ufixed<8,0>' (spaces allowed)."""
        if isinstance(text, FixedType):
            return text
        if not isinstance(text, str):
            raise PrecisionError(f"a precision is a string like 'ap_fixed<16,6>', not {type(text).__name__}; accepted: {ACCEPTED}")
        match = _TYPE.match(text.replace(" ", ""))
        if not match:
            raise PrecisionError(f"precision {text!r} does not parse; accepted: {ACCEPTED}")
        unsigned, kind, body = match.groups()
        fields = body.split(",")
        try:
            if kind == "int":
                if len(fields) != 1:
                    raise PrecisionError(f"precision {text!r}: an int type takes one width, like ap_int<8>")
                width = int(fields[0])
                return cls(width, width, not unsigned)
            if not 2 <= len(fields) <= 5:
                raise PrecisionError(f"precision {text!r} does not parse; accepted: {ACCEPTED}")
            width, integer = int(fields[0]), int(fields[1])
        except ValueError:
            raise PrecisionError(f"precision {text!r}: width and integer bits must be integers; accepted: {ACCEPTED}") from None
        rounding = fields[2].upper().removeprefix("AP_") if len(fields) > 2 else "TRN"
        overflow = fields[3].upper().removeprefix("AP_") if len(fields) > 3 else "WRAP"
        if len(fields) > 4 and fields[4] not in ("0", ""):
            raise PrecisionError(f"precision {text!r}: saturation bits (the fifth field) other than 0 are not emulated")
        return cls(width, integer, not unsigned, rounding, overflow)

    @classmethod
    def from_hls(cls, precision: Any, where: str = "") -> FixedType:
        """hls4ml's FixedPrecisionType / IntegerPrecisionType; anything else is refused, naming `where`."""
        from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType, XnorPrecisionType

        kind = type(precision).__name__
        if isinstance(precision, IntegerPrecisionType) and not isinstance(precision, XnorPrecisionType):
            return cls(int(precision.width), int(precision.width), bool(precision.signed))
        if isinstance(precision, FixedPrecisionType):
            if precision.saturation_bits not in (None, 0):
                raise PrecisionError(f"{where}: {precision} has saturation bits; only 0 is emulated")
            return cls(int(precision.width), int(precision.integer), bool(precision.signed),
                       str(precision.rounding_mode), str(precision.saturation_mode))
        raise PrecisionError(f"{where}: hls4ml type {precision} ({kind}) is not an ap_fixed/ap_int type; the fixed "
                             "backend emulates ap_fixed and ap_int only")

    def quantize(self, values: Any) -> Any:
        """Values brought into the type (float64 numpy array), for reports and plots: rounding as
        the mode says (ties per mode), then overflow. The C++ path is the reference; this agrees with
        it wherever the double arithmetic is exact (|value| * 2^F < 2^52)."""
        import numpy as np

        t = np.ldexp(np.asarray(values, dtype=np.float64), self.fractional)
        floor = np.floor(t)
        rem = t - floor
        up = {
            "TRN": np.zeros_like(t, bool), "TRN_ZERO": (t < 0) & (rem != 0), "RND": rem >= 0.5,
            "RND_ZERO": (rem > 0.5) | ((rem == 0.5) & (t < 0)), "RND_MIN_INF": rem > 0.5,
            "RND_INF": (rem > 0.5) | ((rem == 0.5) & (t >= 0)),
            "RND_CONV": (rem > 0.5) | ((rem == 0.5) & (np.mod(floor, 2) != 0)),
        }[self.rounding]
        raw = floor + up
        lo = -(2.0 ** (self.width - 1)) if self.signed else 0.0
        hi = 2.0 ** (self.width - int(self.signed)) - 1
        if self.overflow == "SAT_SYM" and self.signed:
            lo = -hi
        if self.overflow == "WRAP":
            span = 2.0 ** self.width
            base = -(2.0 ** (self.width - 1)) if self.signed else 0.0
            raw = np.mod(raw - base, span) + base
        elif self.overflow == "SAT_ZERO":
            raw = np.where((raw < lo) | (raw > hi), 0.0, raw)
        else:
            raw = np.clip(raw, lo, hi)
        return np.ldexp(raw, -self.fractional)


def precision_grid(bits: range | list[int], int_bits: range | list[int], *, rounding: str = "TRN",
                   overflow: str = "WRAP") -> list[FixedType]:
    """Every ap_fixed<W, I> with W in `bits`, I in `int_bits` and I <= W (the scan's grid)."""
    return [FixedType(w, i, True, rounding, overflow) for w in bits for i in int_bits if i <= w]
