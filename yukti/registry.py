"""Finds runners through the `yukti.runners` entry-point group and imports one only when asked.

A third-party backend is one module plus one line in its own pyproject:
`[project.entry-points."yukti.runners"] mybackend = "mypkg.runner:MyRunner"`.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

from yukti.errors import UnknownBackendError, YuktiError
from yukti.model import Model
from yukti.runner import BackendInfo, Runner

GROUP = "yukti.runners"
_registered: dict[str, type[Runner] | str] = {}  # added at run time with register()


def _discover() -> dict[str, str]:
    found: dict[str, str] = {}
    owners: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        owner = ep.dist.name if ep.dist else "?"
        if ep.name in found and found[ep.name] != ep.value:
            raise YuktiError(
                f"two packages register backend {ep.name!r}: {owners[ep.name]} ({found[ep.name]}) and {owner} ({ep.value})"
            )
        found[ep.name], owners[ep.name] = ep.value, owner
    return found


def register(name: str, runner: type[Runner] | str, *, replace: bool = False) -> None:
    """Register a runner class (or "module:Class" path) at run time, e.g. from a notebook."""
    if not replace and (name in _registered or name in _discover()):
        raise YuktiError(f"backend {name!r} is already registered; pass replace=True to override it")
    _registered[name] = runner


def unregister(name: str) -> None:
    _registered.pop(name, None)


def names() -> list[str]:
    return sorted(set(_discover()) | set(_registered))


def runner_class(name: str) -> type[Runner]:
    """The runner class registered as `name` (its module is imported now, not before)."""
    target = _registered.get(name) or _discover().get(name)
    if target is None:
        raise UnknownBackendError(f"unknown backend {name!r}; registered backends are {names()}")
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
    else:
        cls = target
    if not (isinstance(cls, type) and issubclass(cls, Runner)):
        raise YuktiError(f"backend {name!r} points at {target!r}, which is not a yukti.Runner subclass")
    if cls.name != name:
        raise YuktiError(f"backend {name!r} points at {cls.__name__} whose name is {cls.name!r}")
    return cls


def backend_info(name: str) -> BackendInfo:
    try:
        cls = runner_class(name)
    except UnknownBackendError:
        raise
    except Exception as exc:  # a broken plugin must not break `yukti backends`
        return BackendInfo(name, False, f"runner failed to import: {type(exc).__name__}: {exc}")
    ok, reason = cls.available()
    return BackendInfo(name, ok, reason, cls.version() if ok else "", cls.description)


def backends() -> list[BackendInfo]:
    """Every registered backend with whether it can run here and, if not, why."""
    return [backend_info(name) for name in names()]


def available_backends() -> list[str]:
    return [info.name for info in backends() if info.available]


def runner(name: str, model: Any, **options: Any) -> Runner:
    """A prepared runner of backend `name` for `model` (anything `yukti.load` accepts)."""
    from yukti.model import load

    model = model if isinstance(model, Model) else load(model)
    return runner_class(name)().prepare(model, **options)
