"""The one family of errors Yukti raises on purpose: each names what was expected."""

from __future__ import annotations


class YuktiError(Exception):
    """Base class: every deliberate Yukti error derives from it."""


class InputError(YuktiError, ValueError):
    """Inputs handed to a runner do not match the model's input specs."""


class ModelLoadError(YuktiError, ValueError):
    """A model could not be read or converted (not ONNX, truncated, export failed)."""


class UnknownBackendError(YuktiError, KeyError):
    """No runner is registered under the requested name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class BackendUnavailableError(YuktiError, RuntimeError):
    """The backend is registered but cannot run here (a package is missing, no device)."""


class UnsupportedModelError(YuktiError, ValueError):
    """The backend cannot run this model (an operator it lacks, a dynamic dimension...)."""


class UnknownNameError(YuktiError, KeyError):
    """An unknown zoo model, dataset or option name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
