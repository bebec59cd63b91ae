"""The Runner contract every backend implements.

Lifecycle: `available()` and `supports(model)` are cheap class-level checks; `prepare(model,
**options)` does everything slow once (convert, compile, load) and times it; `__call__(inputs)`
validates the inputs against the model's specs and returns numpy arrays.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

from yukti.errors import BackendUnavailableError, UnsupportedModelError, YuktiError
from yukti.model import Model
from yukti.options import Option, declare, resolve


@dataclass(frozen=True)
class Support:
    """Answer of the preflight `Runner.supports(model)`; truthy when the model can run."""

    ok: bool
    unsupported: tuple[tuple[str, str], ...] = ()  # (op_type, node_name)
    reason: str = ""
    # True when the refusal is the backend's scope, not a gap: a Keras-only runner given a torch
    # model, a model over hls4ml's practical size. Contract tests skip these and fail the others.
    by_design: bool = False

    def __bool__(self) -> bool:
        return self.ok

    @classmethod
    def from_ops(cls, model: Model, supported_ops: set[str], backend: str) -> "Support":
        """Refuse every node whose op type is not in `supported_ops` (default ONNX domain only)."""
        if not model.has_onnx:
            return cls(False, reason=f"{backend} needs the ONNX form: {model._onnx_error}")
        missing = tuple(
            (node.op_type, node.name or f"#{i}")
            for i, node in enumerate(model.onnx.graph.node)
            if node.op_type not in supported_ops or node.domain not in ("", "ai.onnx")
        )
        if missing:
            ops = sorted({op for op, _ in missing})
            return cls(False, missing, f"{backend} does not support operator(s) {', '.join(ops)}")
        return cls(True)

    def describe(self) -> str:
        if self.ok:
            return "supported"
        nodes = ", ".join(f"{op} (node {name})" for op, name in self.unsupported[:8])
        more = f" and {len(self.unsupported) - 8} more" if len(self.unsupported) > 8 else ""
        return f"{self.reason}" + (f": {nodes}{more}" if nodes else "")


@dataclass(frozen=True)
class BackendInfo:
    name: str
    available: bool
    reason: str = ""
    version: str = ""
    description: str = ""


class Capability(enum.Flag):
    """What a backend offers beyond the contract; declared in `Runner.capabilities`."""

    NONE = 0
    NATIVE_TIMING = enum.auto()  # `time_native(inputs, n_calls)`: per-call ns timed without Python
    EXPORT = enum.auto()  # `export(model, directory)`: standalone sources
    COLUMNS = enum.auto()  # `columns(cols)`: column (SoA) input, one array per feature
    OVERFLOWS = enum.auto()  # `run_with_overflows(inputs)`: outputs and per-layer fixed-point overflow counts


class CapabilityError(YuktiError, NotImplementedError):
    """A backend was asked for something its `capabilities` do not include."""


# The method each capability promises; a class that declares one must define it.
_CAPABILITY_METHODS = {Capability.NATIVE_TIMING: "time_native", Capability.EXPORT: "export", Capability.COLUMNS: "columns",
                       Capability.OVERFLOWS: "run_with_overflows"}


@dataclass(frozen=True)
class RunnerInfo(Mapping[str, Any]):
    """What `prepare` did, with fixed meanings; also a read-only mapping (`info["prepare_s"]`,
    `info.get("cache_hit")`) over the fields and the backend's own facts in `extra`."""

    backend: str
    version: str
    model: str
    model_hash: str | None
    options: dict[str, Any]  # resolved: defaults included (the reuse key of stored results)
    prepare_s: float  # seconds this prepare call took
    build_s: float | None = None  # seconds building the artifact took, whoever built it; None: nothing is built
    cache_hit: bool | None = None  # the artifact came from the cache; None: no cached artifact
    artifact_path: str | None = None
    artifact_bytes: int | None = None
    versions: dict[str, str] = field(default_factory=dict)  # tools the artifact depends on, besides `version`
    thread_safe: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # backend facts (flags, providers, threads_effective...)

    # Older names, still readable: `compile_s` meant build_s (0 on a cpp cache hit, before build_s).
    ALIASES: ClassVar[dict[str, str]] = {"compile_s": "build_s"}
    _FIELDS: ClassVar[tuple[str, ...]] = ()

    def __getitem__(self, key: str) -> Any:
        if key in self._FIELDS:
            return getattr(self, key)
        if key in self.extra:
            return self.extra[key]
        if key in self.ALIASES and getattr(self, self.ALIASES[key]) is not None:
            return getattr(self, self.ALIASES[key])
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self._FIELDS
        yield from self.extra

    def __len__(self) -> int:
        return len(self._FIELDS) + len(self.extra)

    @classmethod
    def collect(cls, runner: "Runner", model: Model, options: dict[str, Any], prepare_s: float,
                facts: Mapping[str, Any]) -> "RunnerInfo":
        """The info of a prepare call: `facts` (what `_prepare` returned) fill the fields they name
        (a legacy `compile_s` fills `build_s`); the rest is `extra`."""
        facts = dict(facts)
        if "build_s" not in facts and "compile_s" in facts:
            facts["build_s"] = facts.pop("compile_s")
        named = {key: facts.pop(key) for key in cls._FIELDS if key in facts and key not in _SET_BY_BASE}
        return cls(backend=runner.name, version=runner.version(), model=model.name,
                   model_hash=model.hash if model.has_onnx else None, options=options, prepare_s=prepare_s,
                   thread_safe=runner.thread_safe, **{**named, "extra": facts})


_SET_BY_BASE = {"backend", "version", "model", "model_hash", "options", "prepare_s", "thread_safe", "extra"}
RunnerInfo._FIELDS = tuple(f.name for f in fields(RunnerInfo) if f.name != "extra")


class Runner:
    """Base class of all backends. Subclasses set `name` and `options` ({name: Option}), and
    implement `available`, `version`, `supports` (optional), `_prepare` and `_run`.

    `_prepare(model, **options)` receives every declared option resolved and validated, and returns
    a dict of facts: keys naming RunnerInfo fields (`build_s`, `cache_hit`, `artifact_path`,
    `artifact_bytes`, `versions`) fill them, the rest land in `info.extra`. After `prepare`,
    `runner.options` holds the resolved values and `runner.info` the RunnerInfo.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    # Python packages the backend imports (module name = distribution name here): `available()` and
    # `version()` come from them unless a runner says more.
    packages: ClassVar[tuple[str, ...]] = ()
    options: ClassVar[Mapping[str, Option]] = MappingProxyType({})
    # {name: default}, derived from `options` (read-only). A subclass may still declare a plain
    # dict here instead of `options`: each value becomes an Option without constraints.
    default_options: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    thread_safe: ClassVar[bool] = True
    capabilities: ClassVar[Capability] = Capability.NONE
    # True when `_run` itself detects NaN/inf (in native code) and then calls
    # `model.validate_inputs(arrays, check_finite=True)` to raise the usual InputError.
    native_finite_check: ClassVar[bool] = False
    # True for backends whose outputs approximate the float network on purpose (fixed-point
    # emulation): compared by argmax agreement and a loose bound instead of float tolerance.
    fixed_point: ClassVar[bool] = False
    # Options every runner accepts; handled here, not passed to `_prepare`, not in the reuse key.
    common_options: ClassVar[Mapping[str, Option]] = MappingProxyType({
        "check_finite": Option(True, type=bool, artifact=False,
                               doc="refuse NaN/inf inputs with InputError (False lets them through)"),
    })

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "options" in own and "default_options" in own:
            raise TypeError(f"{cls.__name__} declares both `options` and `default_options`; declare `options` only")
        if "default_options" in own:  # the older form: a plain {name: default} dict
            cls.options = MappingProxyType(declare(own["default_options"]))
        elif "options" in own:
            cls.options = MappingProxyType(dict(own["options"]))
        cls.default_options = MappingProxyType({name: option.default for name, option in cls.options.items()})
        for capability, method in _CAPABILITY_METHODS.items():
            if capability in cls.capabilities and not any(method in k.__dict__ for k in cls.__mro__ if k is not Runner):
                raise TypeError(f"{cls.__name__} declares {capability} but does not define {method}()")

    def __init__(self) -> None:
        self.model: Model | None = None
        self.options: dict[str, Any] = {}  # type: ignore[misc]  # resolved values; the class holds the declarations
        self.info: RunnerInfo | None = None
        self._check_finite = True

    # -- class-level checks --------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when the backend can run here, else (False, why) — never raises. Every module of
        `packages` must import (a missing one is the reason), then `_available_here` must agree."""
        for module in cls.packages:
            ok, reason = import_status(module)
            if not ok:
                return ok, reason
        return cls._available_here()

    @classmethod
    def _available_here(cls) -> tuple[bool, str]:
        """Checks beyond importing `packages` (a compiler, a framework's configuration)."""
        return True, ""

    @classmethod
    def version(cls) -> str:
        """The version of the backend's first package (override when another one says more)."""
        return package_version(cls.packages[0]) if cls.packages else ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        """Cheap preflight (no compiling): can this backend run `model`?"""
        if not model.has_onnx:
            return Support(False, reason=f"{cls.name} needs the ONNX form: {model._onnx_error}")
        return Support(True)

    @classmethod
    def resolve_options(cls, given: Mapping[str, Any] | None = None, *, threads: int | None = None) -> dict[str, Any]:
        """The options a runner prepared with `given` uses: every declared one, defaults filled in,
        validated (OptionError / UnknownNameError name the backend, the option and what is allowed).
        `threads` is the engine-wide thread count, used when the backend has a `threads` option and
        `given` does not set it. The result is the reuse key of stored results: the engine records
        it, the chooser looks it up."""
        given = dict(given or {})
        if threads is not None and "threads" in cls.options and "threads" not in given:
            given["threads"] = threads
        return resolve(cls.options, cls.common_options, given, backend=cls.name)[0]

    @classmethod
    def has(cls, capability: Capability) -> bool:
        return capability in cls.capabilities

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare(self, model: Model, **options: Any) -> "Runner":
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailableError(f"backend {self.name!r} is not available: {reason}")
        resolved, common = resolve(type(self).options, self.common_options, options, backend=self.name)
        support = self.supports(model)
        if not support:
            raise UnsupportedModelError(f"backend {self.name!r} cannot run model {model.name!r}: {support.describe()}")
        self._check_finite = common["check_finite"]
        started = time.perf_counter()
        facts = self._prepare(model, **resolved) or {}
        prepare_s = time.perf_counter() - started
        self.model, self.options = model, resolved
        self.info = RunnerInfo.collect(self, model, resolved, prepare_s, facts)
        return self

    def __call__(self, inputs: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        if self.model is None:
            raise YuktiError(f"runner {self.name!r} is not prepared; call prepare(model) or use yukti.runner(...)")
        arrays = self.model.validate_inputs(inputs, check_finite=self._check_finite and not self.native_finite_check)
        outputs = self._run(arrays)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def run_validated(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Skip validation: for the engine's timing loops on inputs already validated once."""
        return self._run(arrays)

    # -- capabilities (see `capabilities`); the base refuses ---------------------------------------
    def time_native(self, inputs: list[np.ndarray], n_calls: int, *, min_group_ns: int = 2000) -> np.ndarray:
        """Per-call nanoseconds measured without Python in the loop (Capability.NATIVE_TIMING)."""
        raise CapabilityError(f"backend {self.name!r} has no native timing (its capabilities: {self.capabilities})")

    @classmethod
    def export(cls, model: Model, directory: Any) -> list[Any]:
        """Standalone sources for `model` in `directory` (Capability.EXPORT); returns the paths."""
        raise CapabilityError(f"backend {cls.name!r} has no standalone export (its capabilities: {cls.capabilities})")

    def columns(self, columns: Any) -> np.ndarray | tuple[np.ndarray, ...]:
        """Run on column (SoA) input, one 1-D array per feature (Capability.COLUMNS)."""
        raise CapabilityError(f"backend {self.name!r} takes no column input (its capabilities: {self.capabilities})")

    # -- for subclasses ------------------------------------------------------------------------
    def _prepare(self, model: Model, **options: Any) -> Mapping[str, Any] | None:  # pragma: no cover
        raise NotImplementedError

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        state = f"model={self.model.name!r}" if self.model else "unprepared"
        return f"<{type(self).__name__} {self.name!r} {state}>"


def import_status(module: str) -> tuple[bool, str]:
    """Try to import `module`; a failure becomes a reason string, never an exception."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as exc:  # ImportError, and broken installs raising anything else
        hint = f"pip install 'yukti[{module}]'" if module in {"onnxruntime", "torch", "tensorflow", "hls4ml", "openvino"} else f"pip install {module}"
        return False, f"{module} cannot be imported ({type(exc).__name__}: {exc}); {hint}"
    return True, ""


def package_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""
