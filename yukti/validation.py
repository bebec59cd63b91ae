"""Numeric argument rules shared by the Python API and the command line.

One rule per meaning ("an integer >= 1", "a finite number > 0", ...): the API raises InputError naming
the argument, and the CLI uses the same rule as an argparse `type`, so `--threads 0` is a usage error
(exit code 2) before anything runs and `yukti.benchmark(threads=0)` is refused the same way.
"""

from __future__ import annotations

import argparse
import math
import numbers
from typing import Any, Callable, Generic, TypeVar

from yukti.errors import InputError

T = TypeVar("T", int, float)


class NumberRule(Generic[T]):
    """A requirement on one number: `rule.check(name, value)` for the API, `rule.argparse` for the CLI."""

    def __init__(self, requirement: str, convert: Callable[[Any], T | None], parse: Callable[[str], Any]) -> None:
        self.requirement = requirement  # reads after "must be": "an integer >= 1"
        self._convert = convert  # the accepted value, or None when refused
        self._parse = parse  # how the command line reads the text

    def check(self, name: str, value: Any) -> T:
        """`value` as a plain int/float, or InputError naming `name` and what was expected."""
        converted = self._convert(value)
        if converted is None:
            raise InputError(f"{name} must be {self.requirement}; got {value!r}")
        return converted

    def argparse(self, text: str) -> T:
        """argparse `type=`: the parsed value, or an ArgumentTypeError argparse reports as a usage error."""
        try:
            value = self._parse(text)
        except ValueError:
            value = None
        converted = None if value is None else self._convert(value)
        if converted is None:
            raise argparse.ArgumentTypeError(f"must be {self.requirement}; got {text!r}")
        return converted

    def __repr__(self) -> str:
        return f"<NumberRule {self.requirement}>"


def _as_integer(value: Any, minimum: int) -> int | None:
    # Conversions that change no value are accepted (numpy integers, 8.0); 2.5, True, "8" are not.
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Integral):
        number = int(value)
    elif isinstance(value, numbers.Real) and math.isfinite(float(value)) and float(value).is_integer():
        number = int(value)
    else:
        return None
    return number if number >= minimum else None


def _as_real(value: Any, minimum: float, *, strict: bool, finite: bool) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        return None
    return number if (number > minimum if strict else number >= minimum) else None


POSITIVE_INT: NumberRule[int] = NumberRule("an integer >= 1", lambda v: _as_integer(v, 1), int)
NON_NEGATIVE_INT: NumberRule[int] = NumberRule("an integer >= 0", lambda v: _as_integer(v, 0), int)
POSITIVE_FINITE: NumberRule[float] = NumberRule(
    "a finite number > 0", lambda v: _as_real(v, 0.0, strict=True, finite=True), float)
NON_NEGATIVE_FINITE: NumberRule[float] = NumberRule(
    "a finite number >= 0", lambda v: _as_real(v, 0.0, strict=False, finite=True), float)
# Limits: `inf` is a legitimate "no limit"; NaN compares false with everything and is refused.
NON_NEGATIVE_LIMIT: NumberRule[float] = NumberRule(
    "a number >= 0 (inf allowed, not NaN)", lambda v: _as_real(v, 0.0, strict=False, finite=False), float)


def positive_int(name: str, value: Any) -> int:
    return POSITIVE_INT.check(name, value)


def non_negative_int(name: str, value: Any) -> int:
    return NON_NEGATIVE_INT.check(name, value)


def positive_finite(name: str, value: Any) -> float:
    return POSITIVE_FINITE.check(name, value)


def non_negative_finite(name: str, value: Any) -> float:
    return NON_NEGATIVE_FINITE.check(name, value)


def non_negative_limit(name: str, value: Any) -> float:
    return NON_NEGATIVE_LIMIT.check(name, value)
