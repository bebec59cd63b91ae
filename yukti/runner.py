"""The Runner contract every backend implements.

Lifecycle: `available()` and `supports(model)` are cheap class-level checks; `prepare(model,
**options)` does everything slow once (convert, compile, load) and times it; `__call__(inputs)`
validates the inputs against the model's specs and returns numpy arrays.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from yukti.errors import BackendUnavailableError, UnknownNameError, UnsupportedModelError, YuktiError
from yukti.model import Model


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


class Runner:
    """Base class of all backends. Subclasses set `name`, `default_options`, and implement
    `available`, `version`, `supports` (optional), `_prepare` and `_run`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    default_options: ClassVar[dict[str, Any]] = {}
    thread_safe: ClassVar[bool] = True
    # True when `_run` itself detects NaN/inf (in native code) and then calls
    # `model.validate_inputs(arrays, check_finite=True)` to raise the usual InputError.
    native_finite_check: ClassVar[bool] = False
    # True for backends whose outputs approximate the float network on purpose (fixed-point
    # emulation): compared by argmax agreement and a loose bound instead of float tolerance.
    fixed_point: ClassVar[bool] = False
    # Options every runner accepts; handled here, not passed to `_prepare`.
    common_options: ClassVar[dict[str, Any]] = {"check_finite": True}

    def __init__(self) -> None:
        self.model: Model | None = None
        self.options: dict[str, Any] = {}
        self.info: dict[str, Any] = {}
        self._check_finite = True

    # -- class-level checks --------------------------------------------------------------------
    @classmethod
    def available(cls) -> tuple[bool, str]:
        """(True, "") when the backend can run here, else (False, why) — never raises."""
        return True, ""

    @classmethod
    def version(cls) -> str:
        return ""

    @classmethod
    def supports(cls, model: Model) -> Support:
        """Cheap preflight (no compiling): can this backend run `model`?"""
        if not model.has_onnx:
            return Support(False, reason=f"{cls.name} needs the ONNX form: {model._onnx_error}")
        return Support(True)

    # -- lifecycle -----------------------------------------------------------------------------
    def prepare(self, model: Model, **options: Any) -> "Runner":
        ok, reason = self.available()
        if not ok:
            raise BackendUnavailableError(f"backend {self.name!r} is not available: {reason}")
        unknown = set(options) - set(self.default_options) - set(self.common_options)
        if unknown:
            allowed = sorted(set(self.default_options) | set(self.common_options))
            raise UnknownNameError(f"backend {self.name!r} has no option(s) {sorted(unknown)}; options are {allowed}")
        support = self.supports(model)
        if not support:
            raise UnsupportedModelError(f"backend {self.name!r} cannot run model {model.name!r}: {support.describe()}")
        resolved = {**self.default_options, **{k: v for k, v in options.items() if k in self.default_options}}
        self._check_finite = bool(options.get("check_finite", True))
        started = time.perf_counter()
        extra = self._prepare(model, **resolved) or {}
        prepare_s = time.perf_counter() - started
        self.model, self.options = model, resolved
        self.info = {
            "backend": self.name,
            "version": self.version(),
            "options": resolved,
            "model": model.name,
            "model_hash": model.hash,
            "prepare_s": prepare_s,
            "artifact_path": None,
            "artifact_bytes": None,
            "thread_safe": self.thread_safe,
            **extra,
        }
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

    # -- for subclasses ------------------------------------------------------------------------
    def _prepare(self, model: Model, **options: Any) -> dict[str, Any] | None:  # pragma: no cover
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
        hint = f"pip install 'yukti[{module}]'" if module in {"onnxruntime", "torch", "tensorflow", "hls4ml"} else f"pip install {module}"
        return False, f"{module} cannot be imported ({type(exc).__name__}: {exc}); {hint}"
    return True, ""


def package_version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return ""
