"""Declared runner options: each option's default, type, allowed values and meaning, in one place.

A runner declares `options = {name: Option(...)}`; the Runner base class checks what a caller passes
against the declarations once (`Runner.resolve_options`), so no backend checks its options by hand
and every refusal reads the same way: the backend, the option, what is allowed, what was given.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from yukti.errors import UnknownNameError, YuktiError


class OptionError(YuktiError, ValueError):
    """An option value a backend does not accept (wrong type, not an allowed choice, out of range)."""


@dataclass(frozen=True)
class Option:
    """One runner option.

    `type` (int, float, bool, str, tuple...) and `choices` constrain the value, `minimum`/`maximum`
    bound a number, `nullable` also admits None. `check` validates what the rest cannot express (a
    list of compiler flags): it returns the value to use or raises ValueError saying what is expected.
    `artifact` is False for options that change only how a built artifact is called (threads, the
    call path), not what is built. An Option with no constraints accepts any value (a runner that
    still declares a plain `default_options` dict gets those).
    """

    default: Any
    doc: str = ""
    type: type | tuple[type, ...] | None = None
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    nullable: bool = False
    artifact: bool = True
    check: Callable[[Any], Any] | None = None

    def validate(self, value: Any, *, backend: str, name: str) -> Any:
        """`value` as the runner receives it (numpy scalars become Python ones), or OptionError."""
        if value is None and (self.nullable or self.default is None):
            return None
        try:
            value = self._typed(value)
            if self.choices is not None and value not in self.choices:
                raise ValueError(f"one of {list(self.choices)}")
            if self.minimum is not None and value < self.minimum:
                raise ValueError(self._expected())
            if self.maximum is not None and value > self.maximum:
                raise ValueError(self._expected())
            if self.check is not None:
                value = self.check(value)
        except ValueError as exc:
            raise OptionError(f"backend {backend!r} option {name} must be {exc}; got {value!r}") from None
        return value

    def _typed(self, value: Any) -> Any:
        if self.type is None:
            return value
        if self.type is bool:
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
        elif self.type is int:
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
                return int(value)
        elif self.type is float:
            if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value):
                return float(value)
        elif isinstance(value, self.type):
            return value
        raise ValueError(self._expected())

    def _expected(self) -> str:
        names = {bool: "True or False", int: "an integer", float: "a finite number", str: "a string"}
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        what = " or ".join(names.get(kind, f"a {getattr(kind, '__name__', kind)}") for kind in kinds if kind is not None) or "a value"
        bounds = [f">= {self.minimum}" if self.minimum is not None else "", f"<= {self.maximum}" if self.maximum is not None else ""]
        what += "".join(f" {bound}" for bound in bounds if bound) if self.type is not None else ""
        return what + (" (or None)" if self.nullable else "")


def declare(defaults: Mapping[str, Any]) -> dict[str, Option]:
    """Options with no constraints from a plain {name: default} dict (the older way to declare them)."""
    return {name: Option(default) for name, default in defaults.items()}


def resolve(declared: Mapping[str, Option], common: Mapping[str, Option], given: Mapping[str, Any], *,
            backend: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(declared options resolved: defaults + given, validated; common options resolved). Unknown
    names raise UnknownNameError listing the allowed ones."""
    unknown = set(given) - set(declared) - set(common)
    if unknown:
        allowed = sorted(set(declared) | set(common))
        raise UnknownNameError(f"backend {backend!r} has no option(s) {sorted(unknown)}; options are {allowed}")

    def pick(options: Mapping[str, Option]) -> dict[str, Any]:
        return {name: option.validate(given[name], backend=backend, name=name) if name in given else option.default
                for name, option in options.items()}

    return pick(declared), pick(common)


def string_list(value: Any) -> tuple[str, ...]:
    """For `Option.check`: a list or tuple of strings, as a tuple."""
    if isinstance(value, (list, tuple)) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise ValueError("a list of strings")
