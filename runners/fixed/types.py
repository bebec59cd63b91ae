"""How the generated code holds values: a fixed type's raw integers in int32_t or int64_t, and the
working integer of a kernel chosen so that every exact intermediate (product, aligned sum) fits."""

from __future__ import annotations

from yukti.errors import UnsupportedModelError
from yukti.fixed_point import FixedType


def storage(t: FixedType) -> str:
    """The C++ integer holding raw values of `t` (sign- or zero-extended)."""
    return "int32_t" if t.width <= (32 if t.signed else 31) else "int64_t"


def args(t: FixedType) -> str:
    """`W, F, S, Q, O` template arguments of yfx's conversions."""
    return f"{t.width}, {t.fractional}, {'true' if t.signed else 'false'}, yfx::{t.rounding}, yfx::{t.overflow}"


def work(bits: int, where: str) -> str:
    """The integer type for exact intermediates of `bits` bits (sign included)."""
    if bits <= 32:
        return "int32_t"
    if bits <= 64:
        return "int64_t"
    raise UnsupportedModelError(f"{where}: exact intermediates need {bits} bits, more than the 64 the fixed backend "
                                "holds; use narrower weight/data/accum types")


def product_bits(a: FixedType, b: FixedType) -> int:
    return a.width + b.width


def requant_bits(bits: int, f_in: int, f_out: int) -> int:
    """Bits of a value of `bits` bits once aligned from f_in to f_out fractional bits (left shifts grow it)."""
    return bits + max(0, f_out - f_in)
